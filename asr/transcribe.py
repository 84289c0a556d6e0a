"""The Python API behind `asr transcribe`: load a model bundle, turn audio into text."""

import glob
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
from torch.nn.utils.rnn import pad_sequence

from .audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, load_audio, source_name
from .bundle import DEFAULT_MODEL, load_bundle
from .decoding import DecoderConfig, Word, build_decoder, word_timestamps

log = logging.getLogger(__name__)

DEFAULT_LM = DEFAULT_MODEL.with_name("default.lm.bin")  # shipped beside the default model where it helps it


@dataclass
class Transcript:
    audio_filepath: str
    text: str
    duration: float  # seconds
    words: list[Word] = field(default_factory=list)  # each with start and end seconds and a confidence


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Recognizer:
    """A trained model with its tokenizer, ready to transcribe."""

    def __init__(self, model, tokenizer, device: str | torch.device, decoder: DecoderConfig | None = None):
        self.model, self.tokenizer, self.device = model, tokenizer, torch.device(device)
        self.set_decoder(decoder or DecoderConfig())

    def set_decoder(self, cfg: DecoderConfig) -> None:
        """Decode with `cfg` from now on: greedy, or beam search (an LM is loaded here)."""
        self.decoder_config, self.decode = cfg, build_decoder(self.tokenizer, cfg)

    @torch.inference_mode()
    def log_probs(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz mono waveforms, each (S_i,), run as one padded batch -> log-probs (B, T, V) float32 on the
        CPU and output lengths (B,)."""
        lengths = torch.tensor([len(w) for w in waves], device=self.device)  # (B,)
        batch = pad_sequence(waves, batch_first=True).to(self.device)  # (B, S)
        log_probs, out_lengths = self.model(batch, lengths)
        return log_probs.float().cpu(), out_lengths.cpu()

    def recognize(self, waves: list[torch.Tensor], words: bool = True) -> list[tuple[str, list[Word]]]:
        """Text and timed words (with `words`; else none) for each of a list of 16 kHz mono waveforms (S_i,)."""
        log_probs, lengths = self.log_probs(waves)
        step = self.model.cfg.output_step_seconds
        results = []
        for probs, length, ids in zip(log_probs, lengths.tolist(), self.decode(log_probs, lengths)):
            timed = word_timestamps(probs[:length], ids, self.tokenizer, step) if words else []
            results.append((self.tokenizer.decode(ids), timed))
        return results

    def transcribe(self, sources: Iterable, batch_size: int = 8,
                   on_error: Callable[[AudioError], None] | None = None, words: bool = True) -> Iterator[Transcript]:
        """Transcripts for audio files (paths or binary file objects) in order, `batch_size` at a time;
        `words=False` skips the word timings (the CTC alignment) when only the text is wanted.

        A file that cannot be read is passed to `on_error` (default: logged) and skipped.
        """
        for items in audio_batches(sources, batch_size, on_error):
            results = self.recognize([wave for _, wave in items], words)
            for (name, wave), (text, words) in zip(items, results):
                yield Transcript(name, text, round(len(wave) / SAMPLE_RATE, 3), words)


def audio_batches(sources: Iterable, batch_size: int,
                  on_error: Callable[[AudioError], None] | None = None) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Lists of up to `batch_size` (name, 16 kHz waveform (S,)) of the readable `sources`, in order."""
    pending: list[tuple[str, torch.Tensor]] = []
    for source in sources:
        try:
            pending.append((source_name(source), load_audio(source)))
        except AudioError as err:
            (on_error or report)(err)
        if len(pending) == batch_size:
            yield pending
            pending = []
    if pending:
        yield pending


def report(err: AudioError) -> None:
    log.error("skipped %s", err)


def load_model(path: str | os.PathLike | None = None, device: str | None = None,
               decoder: DecoderConfig | None = None) -> Recognizer:
    """A Recognizer for a model bundle; with no path, the default model shipped with the package.

    `decoder` picks greedy decoding (the default) or beam search, e.g.
    DecoderConfig("beam", lm="lm.bin") for a word n-gram made by `asr lm build`.
    """
    if path is None:
        if not DEFAULT_MODEL.exists():
            raise FileNotFoundError("no default model is installed with this package; pass a model bundle "
                                    "(--model FILE, made by `asr train` or `asr export`)")
        path = DEFAULT_MODEL
        if decoder is None and DEFAULT_LM.exists():
            decoder = DecoderConfig("beam", lm=str(DEFAULT_LM))
    device = device or default_device()
    model, tokenizer = load_bundle(path, device)
    return Recognizer(model, tokenizer, device, decoder)


def find_audio(inputs: Iterable[str | os.PathLike]) -> Iterator[Path | BinaryIO]:
    """The audio the inputs name, in order: files; audio files (by extension) in folders, recursively, and
    files matching glob patterns ("calls/**/*.wav"), each sorted; the files of a manifest (.jsonl); "-": the
    audio on standard input."""
    for item in inputs:
        path = Path(item)
        if str(item) == "-":
            yield sys.stdin.buffer  # load_audio reads a pipe whole
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        elif not path.exists() and glob.has_magic(str(item)):
            yield from sorted(Path(p) for p in glob.glob(str(item), recursive=True) if os.path.isfile(p)) or [path]
        elif path.suffix == ".jsonl":
            from .data import read_manifest

            yield from (u.audio_filepath for u in read_manifest(path))
        else:
            yield path
