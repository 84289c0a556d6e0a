"""Scoring a model on manifests: WER/CER and one reference/hypothesis row per utterance."""

from dataclasses import dataclass

from asr.core.manifest import Utterance
from asr.core.metrics import ErrorCounts, error_counts
from asr.core.text import normalize
from asr.inference.transcribe import Recognizer


@dataclass
class Report:
    counts: ErrorCounts
    rows: list[dict]  # per utterance: audio_filepath, reference, hypothesis, word_errors, words
    skipped: int  # utterances whose audio could not be read

    @property
    def exact(self) -> int:
        """Utterances recognised without a single word error."""
        return sum(row["word_errors"] == 0 and row["hypothesis"] == row["reference"] for row in self.rows)


def evaluate(recognizer: Recognizer, utterances: list[Utterance], batch_size: int = 8) -> Report:
    """Transcribe `utterances` and score them against their normalised transcripts."""
    total, rows = ErrorCounts(), []
    sources = [u.audio_filepath for u in utterances]
    for index, result in recognizer.numbered_transcripts(sources, batch_size, words=False):
        reference = normalize(utterances[index].text)
        counts = error_counts(reference, result.text)
        total += counts
        rows.append({"audio_filepath": result.audio_filepath, "reference": reference,
                     "hypothesis": result.text, "word_errors": counts.word_errors, "words": counts.words})
    return Report(total, rows, len(utterances) - len(rows))
