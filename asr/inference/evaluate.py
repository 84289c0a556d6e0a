"""Scoring a model on manifests: WER/CER and one reference/hypothesis row per utterance."""

import logging
from dataclasses import dataclass

from asr.core.manifest import Utterance, nothing_to_score
from asr.core.metrics import ErrorCounts, error_counts
from asr.core.text import normalize
from asr.inference.transcribe import Recognizer

log = logging.getLogger(__name__)


@dataclass
class Report:
    counts: ErrorCounts
    rows: list[dict]  # per utterance: audio_filepath, reference, hypothesis, word_errors, words
    skipped: int  # utterances whose audio could not be read
    no_reference: int = 0  # utterances whose reference text is empty once normalised: not scored

    @property
    def exact(self) -> int:
        """Utterances recognised without a single word error."""
        return sum(row["word_errors"] == 0 and row["hypothesis"] == row["reference"] for row in self.rows)


def with_reference(utterances: list[Utterance]) -> list[Utterance]:
    """The utterances whose reference text is not empty once normalised; a warning names each of the others,
    which cannot be scored (any word would be an error out of 0 words)."""
    kept = []
    for u in utterances:
        if normalize(u.text):
            kept.append(u)
        else:
            log.warning("not scored: %s: its reference text %r is empty once normalised", u.audio_filepath, u.text)
    return kept


def evaluate(recognizer: Recognizer, utterances: list[Utterance], batch_size: int = 8,
             name: str = "the manifest") -> Report:
    """Transcribe `utterances` and score them against their normalised transcripts; those with an empty
    reference are left out, and counted. ManifestError, naming `name`, if none can be scored."""
    total, rows = ErrorCounts(), []
    scored = with_reference(utterances)
    if not scored:
        raise nothing_to_score(name, len(utterances), "every reference text is empty")
    sources = [u.audio_filepath for u in scored]
    for index, result in recognizer.numbered_transcripts(sources, batch_size, words=False):
        reference = normalize(scored[index].text)
        counts = error_counts(reference, result.text)
        total += counts
        rows.append({"audio_filepath": result.audio_filepath, "reference": reference,
                     "hypothesis": result.text, "word_errors": counts.word_errors, "words": counts.words})
    if not rows:
        raise nothing_to_score(name, len(utterances), "no audio file could be read")
    return Report(total, rows, len(scored) - len(rows), len(utterances) - len(scored))
