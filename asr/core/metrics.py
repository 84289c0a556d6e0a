"""Word and character error rates, counted with jiwer and summed across utterances.

Scores are ratios of summed edit counts to summed reference lengths, never averages of
per-utterance (or per-rank) rates.
"""

from dataclasses import dataclass

import jiwer


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
