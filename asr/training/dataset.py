"""Utterances to padded batches: DataLoader workers decode and augment audio (asr.core.augment); features are
computed later, on the model's device."""

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from asr.core.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio
from asr.core.augment import Augmenter
from asr.core.manifest import DURATION_TOLERANCE, Utterance
from asr.core.text import normalize
from asr.training.sampler import Draw

log = logging.getLogger(__name__)

MAX_UNREADABLE_IN_A_ROW = 10  # undecodable files in a row before training stops: the data is broken, not a file


class SpeechDataset(Dataset):
    """Draws (or plain indices) -> (wave (S,) float32, target (L,) long, index); audio is decoded here and, with
    an `augmenter`, augmented with the draw's seed (asr.core.augment: speed perturbation, rooms, noise, ...)."""

    def __init__(self, utterances: Sequence[Utterance], tokenizer, augmenter: Augmenter | None = None):
        self.utterances = utterances
        self.tokenizer = tokenizer
        self.augmenter = augmenter

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, draw: Draw | int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Utterance i, or, when its audio cannot be decoded (a file corrupt past its header), the next one that
        can: the bad file is reported by name and costs one example, not the run, and every batch (and under DDP
        every rank) keeps its size. So does a file longer than its manifest row says (load_utterance)."""
        i, seed = draw if isinstance(draw, tuple) else (draw, draw)
        for j in range(i, i + MAX_UNREADABLE_IN_A_ROW):
            u = self.utterances[j % len(self)]
            try:
                wave = load_utterance(u)
            except AudioError as err:
                log.warning("skipped in training: %s", err)
                continue
            target = torch.tensor(self.tokenizer.encode(normalize(u.text)), dtype=torch.long)  # (L,)
            if self.augmenter is not None:
                wave = self.augmenter(wave, torch.Generator().manual_seed(seed), self.other)
            return wave, target, j % len(self)
        raise AudioError(self.utterances[i].audio_filepath, f"unreadable, as are the {MAX_UNREADABLE_IN_A_ROW - 1} "
                         "utterances after it; check the data with `asr check-manifest --decode`")

    def other(self, rng: torch.Generator) -> torch.Tensor:
        """A random utterance's wave (S',), for babble; silence if it cannot be decoded (the file named in a
        warning, as __getitem__ does)."""
        u = self.utterances[int(torch.randint(len(self), (), generator=rng))]
        try:
            return load_utterance(u)
        except AudioError as err:
            log.warning("silence in place of a babble talker: %s", err)
            return torch.zeros(0)


def load_utterance(u: Utterance) -> torch.Tensor:
    """u's wave (S,); AudioError if its length is not the manifest row's (a file changed since the run started, or
    a header that lied): the sampler planned the batch by the row, and a 2-hour file listed as 2 s would fill
    memory (measured: 14.9 GB in 3 minutes)."""
    wave = torch.from_numpy(load_audio(u.audio_filepath))
    if problem := length_problem(u, len(wave) / SAMPLE_RATE):
        raise AudioError(u.audio_filepath, problem)
    return wave


def audio_problem(u: Utterance) -> str | None:
    """Why u's audio cannot be trained on, from its header alone (missing, unreadable, or not as long as its row
    says), or None."""
    try:
        return length_problem(u, audio_duration(u.audio_filepath))
    except AudioError as err:
        return err.cause


def length_problem(u: Utterance, seconds: float) -> str | None:
    """The problem of audio `seconds` long for u's manifest row, or None within DURATION_TOLERANCE."""
    if abs(seconds - u.duration) > DURATION_TOLERANCE:
        return f"lasts {seconds:.3f} s but its manifest row says 'duration': {u.duration:g} (fix the row)"
    return None


class Batch(NamedTuple):
    """A padded batch; Lightning moves it to the device and the DataLoader pins it, field by field."""

    waves: torch.Tensor  # (B, S_max) float32, zero-padded
    wave_lengths: torch.Tensor  # (B,) long, samples
    targets: torch.Tensor  # (B, L_max) long, padded with 0 (the blank)
    target_lengths: torch.Tensor  # (B,) long
    indices: torch.Tensor  # (B,) long, positions in the dataset


def collate(items: Sequence[tuple[torch.Tensor, torch.Tensor, int]]) -> Batch:
    """SpeechDataset items -> Batch."""
    waves, targets, indices = zip(*items)
    return Batch(
        waves=pad_sequence(waves, batch_first=True),
        wave_lengths=torch.tensor([len(w) for w in waves], dtype=torch.long),
        targets=pad_sequence(targets, batch_first=True, padding_value=0),
        target_lengths=torch.tensor([len(t) for t in targets], dtype=torch.long),
        indices=torch.tensor(indices, dtype=torch.long),
    )
