"""`asr tune-lm`: search the LM weight and word score of beam search on a dev set.

The model runs over the dev set once, as `asr evaluate` runs it (Recognizer.log_prob_batches: recordings over
30 s in chunks, batches alike), so the weights are tuned on the decodings that evaluate scores; the
log-probabilities are then decoded at every point of a grid (or at random points), in parallel processes
forked after the LM is loaded, so it is loaded only once.
"""

import itertools
import logging
import multiprocessing
import random
from dataclasses import dataclass

import numpy as np

from asr.core.decoding import BeamSearchDecoder, greedy_decode
from asr.core.manifest import ManifestError, Utterance
from asr.core.metrics import ErrorCounts, error_counts
from asr.core.text import normalize
from asr.inference.transcribe import Recognizer, by_source, joined

log = logging.getLogger(__name__)

LM_WEIGHTS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
WORD_SCORES = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]
RANDOM_RANGES = {"lm_weight": (0.0, 4.0), "word_score": (-3.0, 3.0)}


@dataclass
class DevSet:
    log_probs: list[list[np.ndarray]]  # per utterance, one (T_c, V) per chunk, float32
    references: list[str]  # normalised


@dataclass
class Trial:
    lm_weight: float
    word_score: float
    counts: ErrorCounts


def dev_log_probs(recognizer: Recognizer, utterances: list[Utterance], batch_size: int = 8) -> DevSet:
    """Run the model once over the utterances whose audio can be read, each manifest line on its own."""
    def chunk_log_probs():  # each chunk's (T_c, V)
        for batch, log_probs, lengths in recognizer.log_prob_batches([u.audio_filepath for u in utterances],
                                                                      batch_size):
            for (index, name, chunk), probs, length in zip(batch, log_probs, lengths.tolist()):
                yield index, name, chunk, probs[:length].copy()

    dev = DevSet([], [])
    for index, _, parts, _ in by_source(chunk_log_probs()):  # as evaluate regroups them
        dev.log_probs.append([probs for _, probs in parts])
        dev.references.append(normalize(utterances[index].text))
    if not dev.log_probs:
        raise ManifestError("no utterance of the dev manifest could be read")
    return dev


def transcripts(decode, dev: DevSet, tokenizer) -> list[str]:
    """The dev set decoded by a decoder ((B, T, V), (B,) -> token ids), one chunk at a time."""
    return [joined(tokenizer.decode(decode(probs[None], np.array([len(probs)]))[0]) for probs in chunks)
            for chunks in dev.log_probs]


def score(decode, dev: DevSet, tokenizer) -> ErrorCounts:
    """Summed errors of a decoder ((B, T, V), (B,) -> token ids) over the dev set."""
    return sum(map(error_counts, dev.references, transcripts(decode, dev, tokenizer)), ErrorCounts())


def grid(lm_weights: list[float], word_scores: list[float]) -> list[tuple[float, float]]:
    return list(itertools.product(lm_weights, word_scores))


def random_points(trials: int, seed: int = 0) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [tuple(round(rng.uniform(*RANDOM_RANGES[key]), 3) for key in ("lm_weight", "word_score"))
            for _ in range(trials)]


_job: dict = {}  # the BeamSearchDecoder (LM loaded), the dev set and the tokenizer, inherited by the workers


def _trial(point: tuple[float, float]) -> Trial:
    decoder = _job["decoder"].reweighted(*point)
    return Trial(*point, score(decoder, _job["dev"], _job["tokenizer"]))


def tune(decoder: BeamSearchDecoder, dev: DevSet, points: list[tuple[float, float]], jobs: int = 2) -> list[Trial]:
    """Dev-set errors of the beam search `decoder` reweighted to each (lm_weight, word_score) point, in
    `jobs` processes."""
    _job.update(decoder=decoder, dev=dev, tokenizer=decoder.tokenizer)
    jobs = max(1, min(jobs, len(points)))
    log.info("decoding %d utterances at %d points in %d processes", len(dev.log_probs), len(points), jobs)
    try:
        if jobs == 1:
            return [_trial(point) for point in points]
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            return pool.map(_trial, points, chunksize=1)
    finally:
        _job.clear()


def best(trials: list[Trial]) -> Trial:
    """Fewest word errors; among equals, the smallest LM weight and word score closest to 0."""
    return min(trials, key=lambda t: (t.counts.word_errors, t.lm_weight, abs(t.word_score)))


def greedy_counts(dev: DevSet, tokenizer) -> ErrorCounts:
    return score(greedy_decode, dev, tokenizer)
