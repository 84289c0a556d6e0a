"""Cutting long recordings into chunks at pauses (asr/inference/chunking.py): where the cuts land, and that no sample is
lost or read twice."""

import numpy as np
import pytest
import soundfile as sf
from asr.core.audio import SAMPLE_RATE, resample, stream_audio
from asr.inference.chunking import MAX_CHUNK_SECONDS, SEARCH_SECONDS, chunks, quietest_point, split

RATE = 8000  # not SAMPLE_RATE, so that chunks() has to resample


def bursts_and_pauses(seconds: float, rate: int = RATE, noise_floor: float = 0.0, seed: int = 0):
    """Noise bursts of 0.5-4 s ("speech") between pauses of 0.3-1 s -> wave (S,), pause mask (S,)."""
    rng = np.random.default_rng(seed)
    wave, pause = [], []
    while sum(map(len, wave)) < seconds * rate:
        speech = int(rng.uniform(0.5, 4.0) * rate)
        quiet = int(rng.uniform(0.3, 1.0) * rate)
        wave += [rng.normal(0, 0.2, speech), rng.normal(0, noise_floor, quiet)]
        pause += [np.zeros(speech, bool), np.ones(quiet, bool)]
    return np.concatenate(wave).astype(np.float32), np.concatenate(pause)


def blocks_of(wave: np.ndarray, sizes, rate: int = RATE):
    """The wave cut into consecutive blocks of the given sizes, cycling through them."""
    start, i = 0, 0
    while start < len(wave):
        yield wave[start:start + sizes[i % len(sizes)]], rate
        start, i = start + sizes[i % len(sizes)], i + 1


def test_the_quietest_point_is_in_the_middle_of_the_pause():
    rng = np.random.default_rng(1)
    wave = rng.normal(0, 0.3, 3 * RATE).astype(np.float32)
    wave[RATE:RATE + RATE // 2] *= 0.001  # a 0.5 s pause at 1.0-1.5 s under a faint noise floor
    point = quietest_point(wave, window=RATE // 10)
    assert 1.15 * RATE < point < 1.35 * RATE


@pytest.mark.parametrize("noise_floor", [0.0, 1e-3])
def test_cuts_land_in_pauses_and_the_chunks_put_back_together_are_the_recording(noise_floor):
    wave, pause = bursts_and_pauses(200, noise_floor=noise_floor)
    pieces = list(split(blocks_of(wave, [3000, 17777, 80000])))
    assert len(pieces) >= 200 / MAX_CHUNK_SECONDS
    assert np.array_equal(np.concatenate([chunk for _, chunk, _ in pieces]), wave)  # none lost, none twice
    starts = [first for first, _, _ in pieces]
    assert starts == list(np.cumsum([0] + [len(chunk) for _, chunk, _ in pieces[:-1]]))
    for first, chunk, rate in pieces[:-1]:
        assert rate == RATE
        assert (MAX_CHUNK_SECONDS - SEARCH_SECONDS) * RATE <= len(chunk) <= MAX_CHUNK_SECONDS * RATE
        cut = first + len(chunk)
        assert pause[cut - RATE // 25:cut + RATE // 25].all(), f"the cut at {cut / RATE:.2f} s is not in a pause"


def test_the_chunks_do_not_depend_on_the_block_size():
    wave, _ = bursts_and_pauses(100, seed=2)
    whole = [(first, len(chunk)) for first, chunk, _ in split([(wave, RATE)])]
    streamed = [(first, len(chunk)) for first, chunk, _ in split(blocks_of(wave, [RATE // 3]))]
    assert whole == streamed and len(whole) > 3


def test_chunks_are_resampled_and_placed_on_the_recordings_time_axis():
    wave, _ = bursts_and_pauses(70, seed=3)
    pieces = list(split([(wave, RATE)]))
    result = list(chunks([(wave, RATE)]))
    assert [c.last for c in result] == [False] * (len(result) - 1) + [True]
    for chunk, (first, samples, _) in zip(result, pieces, strict=True):
        assert chunk.start == first / RATE
        assert chunk.wave.dtype == np.float32 and len(chunk.wave) == len(samples) * SAMPLE_RATE // RATE


def test_a_file_streamed_in_blocks_gives_the_chunks_of_the_whole_wave(tmp_path):
    wave, _ = bursts_and_pauses(80, seed=4)
    wave = np.stack([wave, wave * 0.5], axis=1)  # stereo: averaged to mono block by block
    sf.write(tmp_path / "long.flac", wave, RATE)
    blocks = list(stream_audio(tmp_path / "long.flac", block_values=7 * RATE * 2))  # 7 s, resampled
    mono = sf.read(tmp_path / "long.flac", dtype="float32")[0].mean(axis=1)
    joined = np.concatenate([block for block, _ in blocks])
    assert np.allclose(joined, resample(mono, RATE, SAMPLE_RATE), atol=1e-4)
    streamed = list(chunks(blocks))
    whole = list(chunks([(joined, SAMPLE_RATE)]))
    assert len(streamed) == len(whole) > 2
    for a, b in zip(streamed, whole):
        assert a.start == b.start and np.array_equal(a.wave, b.wave)


def test_a_short_recording_is_one_chunk():
    wave = np.full(RATE, 0.1, dtype=np.float32)
    [chunk] = chunks([(wave, RATE)])
    assert chunk.start == 0.0 and chunk.last and len(chunk.wave) == SAMPLE_RATE
