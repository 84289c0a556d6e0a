"""Validation WER and CER during training, synchronised across ranks by summing edit counts (torchmetrics)."""

import torch
from torchmetrics import Metric

from asr.core.metrics import ErrorCounts, error_counts


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
