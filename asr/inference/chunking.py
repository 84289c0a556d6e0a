"""Long recordings in chunks: memory holds one chunk, never the whole file.

A recording arrives as blocks of samples (from audio.stream_audio, at SAMPLE_RATE, or one in-memory
waveform). Whenever more than MAX_CHUNK_SECONDS are buffered, a chunk is cut at the quietest moment of its
last SEARCH_SECONDS, so cuts fall in pauses between words; a waveform at another rate is resampled to
SAMPLE_RATE a chunk at a time (its edges are quiet, so the resampler's edge effects are inaudible). A chunk
knows where it starts in the recording, which puts the words decoded from it on the recording's time axis.

Shapes: S samples.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from asr.core.audio import SAMPLE_RATE, resample

MAX_CHUNK_SECONDS = 30.0  # no chunk is longer
SEARCH_SECONDS = 10.0  # a chunk is cut in its last SEARCH_SECONDS: chunks are 20-30 s but the last
WINDOW_SECONDS = 0.1  # quietness is the energy of windows this long, every quarter window
SILENCE_ENERGY = 1e-7  # mean square within this of the quietest window's counts as equally quiet


@dataclass
class Chunk:
    start: float  # seconds from the start of the recording
    wave: np.ndarray  # (S,) float32 at SAMPLE_RATE
    last: bool  # the recording's final chunk

    @property
    def end(self) -> float:
        """Seconds from the start of the recording to this chunk's end."""
        return self.start + len(self.wave) / SAMPLE_RATE


def quietest_point(wave: np.ndarray, window: int) -> int:
    """The sample at the middle of the longest run of quietest windows of `window` samples in wave (S,)."""
    hop = max(1, window // 4)
    power = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])  # (S + 1,)
    starts = np.arange(0, max(1, len(wave) - window + 1), hop)
    energy = (power[np.minimum(starts + window, len(wave))] - power[starts]) / window  # mean square per window
    quiet = np.flatnonzero(energy <= energy.min() + SILENCE_ENERGY)
    runs = np.split(quiet, np.flatnonzero(np.diff(quiet) > 1) + 1)
    run = max(runs, key=len)
    return min(len(wave) - 1, int(starts[run[len(run) // 2]]) + window // 2)


def split(blocks: Iterable[tuple[np.ndarray, int]]) -> Iterator[tuple[int, np.ndarray, int]]:
    """Blocks (S_b,) of one recording at its sample rate -> (first sample, chunk (S_c,), rate), in order.

    Every chunk but the last is between MAX_CHUNK_SECONDS - SEARCH_SECONDS and MAX_CHUNK_SECONDS long.
    """
    buffer, position, start, rate = np.zeros(0, dtype=np.float32), 0, 0, None
    for block, rate in blocks:
        buffer = np.concatenate([buffer[position:], block])  # at most one chunk and one block
        position = 0
        longest, search = int(MAX_CHUNK_SECONDS * rate), int(SEARCH_SECONDS * rate)
        while len(buffer) - position > longest:
            region = buffer[position + longest - search:position + longest]
            cut = position + longest - search + quietest_point(region, int(WINDOW_SECONDS * rate))
            yield start, buffer[position:cut], rate
            start, position = start + cut - position, cut
    if len(buffer) > position or start == 0:  # the rest; a recording resampled to no samples (one sample at 44.1 kHz
        yield start, buffer[position:], rate  # gives round(0.36) = 0) is one empty chunk, transcribed as no words


def chunks(blocks: Iterable[tuple[np.ndarray, int]]) -> Iterator[Chunk]:
    """Blocks (S_b,) of one recording at its sample rate -> Chunks at SAMPLE_RATE, the last one marked."""
    previous = None
    for first, wave, rate in split(blocks):
        wave = resample(np.array(wave, dtype=np.float32), rate, SAMPLE_RATE)  # its own memory, no view of the buffer
        if previous:
            yield previous
        previous = Chunk(first / rate, wave, last=False)
    if previous:
        previous.last = True
        yield previous
