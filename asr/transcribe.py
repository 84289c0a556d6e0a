"""The Python API behind `asr transcribe`: load a model bundle, turn audio into text."""

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from .audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, load_audio
from .bundle import load_bundle
from .decoding import greedy_decode

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parent / "assets" / "default.safetensors"


@dataclass
class Transcript:
    audio_filepath: str
    text: str
    duration: float  # seconds


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Recognizer:
    """A trained model with its tokenizer, ready to transcribe."""

    def __init__(self, model, tokenizer, device: str | torch.device):
        self.model, self.tokenizer, self.device = model, tokenizer, torch.device(device)

    @torch.inference_mode()
    def recognize(self, waves: list[torch.Tensor]) -> list[str]:
        """Texts for a list of 16 kHz mono waveforms, each (S_i,), run as one padded batch."""
        lengths = torch.tensor([len(w) for w in waves], device=self.device)  # (B,)
        batch = pad_sequence(waves, batch_first=True).to(self.device)  # (B, S)
        log_probs, out_lengths = self.model(batch, lengths)
        return [self.tokenizer.decode(ids) for ids in greedy_decode(log_probs, out_lengths)]

    def transcribe(self, sources: Iterable, batch_size: int = 8,
                   on_error: Callable[[AudioError], None] | None = None) -> Iterator[Transcript]:
        """Transcripts for audio files (paths or binary file objects) in order, `batch_size` at a time.

        A file that cannot be read is passed to `on_error` (default: logged) and skipped.
        """
        pending: list[tuple[str, torch.Tensor]] = []
        for source in sources:
            try:
                pending.append((name_of(source), load_audio(source)))
            except AudioError as err:
                (on_error or report)(err)
            if len(pending) == batch_size:
                yield from self._transcribe_batch(pending)
                pending = []
        if pending:
            yield from self._transcribe_batch(pending)

    def _transcribe_batch(self, items: list[tuple[str, torch.Tensor]]) -> Iterator[Transcript]:
        texts = self.recognize([wave for _, wave in items])
        for (name, wave), text in zip(items, texts):
            yield Transcript(name, text, round(len(wave) / SAMPLE_RATE, 3))


def report(err: AudioError) -> None:
    log.error("skipped %s", err)


def name_of(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<stdin>")


def load_model(path: str | os.PathLike | None = None, device: str | None = None) -> Recognizer:
    """A Recognizer for a model bundle; with no path, the default model shipped with the package."""
    if path is None:
        if not DEFAULT_MODEL.exists():
            raise FileNotFoundError("no default model is installed with this package; pass a model bundle "
                                    "(--model FILE, made by `asr train` or `asr export`)")
        path = DEFAULT_MODEL
    device = device or default_device()
    model, tokenizer = load_bundle(path, device)
    return Recognizer(model, tokenizer, device)


def find_audio(inputs: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files named, and audio files (by extension) found recursively in folders named, in sorted order."""
    for item in map(Path, inputs):
        if item.is_dir():
            yield from sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        else:
            yield item
