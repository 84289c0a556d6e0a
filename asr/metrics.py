"""Word and character error rates, counted with jiwer, summed across utterances and ranks.

Scores are ratios of summed edit counts to summed reference lengths, never averages of
per-utterance (or per-rank) rates.
"""

from dataclasses import dataclass

import jiwer
import torch
from torchmetrics import Metric


@dataclass
class ErrorCounts:
    word_errors: int = 0
    words: int = 0
    char_errors: int = 0
    chars: int = 0

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.word_errors + other.word_errors, self.words + other.words,
                           self.char_errors + other.char_errors, self.chars + other.chars)

    @property
    def wer(self) -> float:
        return self.word_errors / max(self.words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.chars, 1)


def edits(output) -> int:
    return output.substitutions + output.deletions + output.insertions


def error_counts(reference: str, hypothesis: str) -> ErrorCounts:
    """Edit counts of one normalised hypothesis against its normalised reference."""
    if not reference:  # jiwer refuses empty references: every hypothesis word is an insertion
        return ErrorCounts(len(hypothesis.split()), 0, len(hypothesis), 0)
    words = jiwer.process_words(reference, hypothesis)
    chars = jiwer.process_characters(reference, hypothesis)
    return ErrorCounts(edits(words), len(reference.split()), edits(chars), len(reference))


class ErrorRate(Metric):
    """WER and CER over everything seen since the last reset; synchronised by summing counts."""

    def __init__(self):
        super().__init__()
        for name in ("word_errors", "words", "char_errors", "chars"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, references: list[str], hypotheses: list[str]) -> None:
        total = sum((error_counts(r, h) for r, h in zip(references, hypotheses)), ErrorCounts())
        self.word_errors += total.word_errors
        self.words += total.words
        self.char_errors += total.char_errors
        self.chars += total.chars

    def compute(self) -> dict[str, torch.Tensor]:
        return {"wer": self.word_errors / self.words.clamp(min=1),
                "cer": self.char_errors / self.chars.clamp(min=1)}
