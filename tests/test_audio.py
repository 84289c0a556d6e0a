import io
import subprocess

import numpy as np
import pytest
import soundfile as sf
from conftest import non_finite, tone

from asr.core.audio import (
    SAMPLE_RATE,
    AudioError,
    AudioLimitError,
    Resampler,
    resample,
    audio_duration,
    load_audio,
    stream_audio,
    write_audio,
)

def peak_frequency(wave: np.ndarray, rate=SAMPLE_RATE) -> float:
    """The frequency in Hz of the largest FFT bin of a waveform (S,)."""
    spectrum = np.abs(np.fft.rfft(wave))
    return float(spectrum.argmax()) * rate / len(wave)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "opus", "mp3"])
def test_round_trip(tmp_path, ext):
    path = tmp_path / f"tone.{ext}"
    write_audio(path, tone())
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == SAMPLE_RATE // 2
    assert audio_duration(path) == pytest.approx(0.5)
    assert abs(peak_frequency(wave) - 440) <= 2
    if ext in ("wav", "flac"):  # lossless, 16-bit
        assert np.allclose(wave, tone(), atol=1e-4)


def test_write_audio_accepts_a_list_and_rejects_multichannel(tmp_path):
    write_audio(tmp_path / "t.wav", tone().tolist())
    assert len(load_audio(tmp_path / "t.wav")) == SAMPLE_RATE // 2
    with pytest.raises(ValueError, match="mono"):
        write_audio(tmp_path / "s.wav", np.zeros((100, 2), dtype=np.float32))


def test_stereo_is_averaged(tmp_path):
    left, right = tone(440), tone(1000) * 0.5
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    wave = load_audio(tmp_path / "stereo.wav")
    assert np.allclose(wave, (left + right) / 2, atol=1e-6)


def test_resampled_to_16k(tmp_path):
    sf.write(tmp_path / "8k.wav", tone(440, seconds=0.5, rate=8000), 8000)
    wave = load_audio(tmp_path / "8k.wav")
    assert len(wave) == 8000  # 0.5 s at 16 kHz: twice the 4000 input samples
    assert abs(peak_frequency(wave) - 440) <= 2
    assert len(load_audio(tmp_path / "8k.wav", sample_rate=8000)) == 4000


def test_file_like(tmp_path):
    buffer = io.BytesIO()
    sf.write(buffer, tone(), SAMPLE_RATE, format="FLAC")
    buffer.seek(0)
    assert len(load_audio(buffer)) == SAMPLE_RATE // 2


class Pipe(io.RawIOBase):
    """A readable, non-seekable stream like stdin."""

    def __init__(self, data: bytes):
        self.data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, b):
        return self.data.readinto(b)


def test_pipe_and_its_errors_are_named_stdin(tmp_path):
    write_audio(tmp_path / "t.wav", tone())
    assert len(load_audio(Pipe((tmp_path / "t.wav").read_bytes()))) == SAMPLE_RATE // 2
    with pytest.raises(AudioError, match="<stdin>: not a readable audio file"):
        load_audio(Pipe(b"this is not audio"))


def zero_frames(path):
    sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)


def truncated(path):
    write_audio(path, tone())
    path.write_bytes(path.read_bytes()[:30])  # cut inside the header


@pytest.mark.parametrize(
    "make, cause",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, this is text and not audio\n" * 20), "not a readable audio file"),
        (lambda p: p.mkdir(), "is a directory"),
        (truncated, "not a readable audio file"),
        (zero_frames, "contains no audio samples"),
        (non_finite(np.nan), "contains NaN or infinite samples"),
        (non_finite(np.inf), "contains NaN or infinite samples"),
    ],
    ids=["missing", "empty", "text", "directory", "truncated", "zero-frames", "nan", "inf"],
)
def test_bad_audio_raises_audio_error(tmp_path, make, cause):
    path = tmp_path / "x.wav"
    make(path)
    with pytest.raises(AudioError, match=cause) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path) and cause in info.value.cause
    if cause != "contains NaN or infinite samples":  # the header alone can't tell
        with pytest.raises(AudioError, match=cause):
            audio_duration(path)


def test_audio_error_message():
    err = AudioError("a.wav", "contains no audio samples")
    assert str(err) == "a.wav: contains no audio samples"
    assert (err.path, err.cause) == ("a.wav", "contains no audio samples")


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 384000])
def test_resampling_block_by_block_matches_resampling_the_whole_signal(rate):
    signal = np.random.default_rng(rate).standard_normal(3 * rate + 17).astype(np.float32)
    resampler, pieces, start = Resampler(rate, SAMPLE_RATE), [], 0
    for size in [1, 7, 1000, rate // 3, 5, rate] * 3:  # blocks shorter and longer than the filter
        pieces.append(resampler(signal[start:start + size]))
        start += size
    pieces += [resampler(signal[start:]), resampler.flush()]
    whole = resample(signal, rate, SAMPLE_RATE)
    assert len(whole) == round(len(signal) * SAMPLE_RATE / rate)
    assert np.array_equal(np.concatenate(pieces), whole)  # soxr's stream gives exactly what it gives the whole


def test_resampling_keeps_a_tone_and_removes_what_the_new_rate_cannot_hold():
    seconds, rate = 1.0, 48000
    kept, aliased = tone(1000, seconds, rate), tone(12000, seconds, rate)  # 12 kHz is past 16 kHz's Nyquist
    edges = slice(100, -100)  # the filter's start and end aside
    assert np.allclose(resample(kept, rate, SAMPLE_RATE)[edges], tone(1000, seconds)[edges], atol=2e-3)
    assert np.abs(resample(aliased, rate, SAMPLE_RATE)[100:-100]).max() < 1e-3


def piped_flac(wav, out, rate: int, channels: int = 1):
    """`wav` as sox writes FLAC to a pipe: its header gives no length."""
    raw = subprocess.run(["sox", str(wav), "-t", "raw", "-"], check=True, capture_output=True).stdout
    flac = subprocess.run(["sox", "-t", "raw", "-r", str(rate), "-c", str(channels), "-b", "16", "-e", "signed", "-",
                           "-t", "flac", "-"], input=raw, check=True, capture_output=True).stdout
    out.write_bytes(flac)
    assert sf.info(out).frames == 2**63 - 1  # libsndfile's "unknown"
    return out


def test_a_flac_written_to_a_pipe_is_read_to_its_end(tmp_path):
    sf.write(tmp_path / "t.wav", tone(440, seconds=40, rate=22050) * 0.5, 22050, subtype="PCM_16")
    piped = piped_flac(tmp_path / "t.wav", tmp_path / "piped.flac", 22050)
    assert np.allclose(load_audio(piped), load_audio(tmp_path / "t.wav"), atol=1e-4)
    assert audio_duration(piped) == 40.0
    with open(piped, "rb") as f:  # as an upload or stdin
        assert sum(len(b) for b, _ in stream_audio(f)) == 40 * SAMPLE_RATE
    with pytest.raises(AudioLimitError, match="piped.flac: at least 31 s of audio, over the limit of 30 s"):
        list(stream_audio(piped, max_seconds=30, block_values=22050))  # no length in its header: refused once
        # decoded past the limit, a second at a time


def test_sample_rates_and_channels_beyond_reason_are_refused_by_the_header(tmp_path):
    sf.write(tmp_path / "fast.wav", np.zeros(100, np.float32), 768_000)
    sf.write(tmp_path / "slow.wav", np.zeros(100, np.float32), 100)
    sf.write(tmp_path / "many.wav", np.zeros((100, 33), np.float32), SAMPLE_RATE)
    for name, cause in [("fast.wav", "a sample rate of 768000 Hz, where asr reads 4000 to 384000 Hz"),
                        ("slow.wav", "a sample rate of 100 Hz"),
                        ("many.wav", "33 channels, where asr reads at most 32")]:
        with pytest.raises(AudioError, match=cause):
            load_audio(tmp_path / name)


def test_many_channels_at_a_high_rate_are_refused_by_their_samples_not_their_seconds(tmp_path):
    sf.write(tmp_path / "dxd.flac", np.zeros((10 * 384_000, 8), np.float32), 384_000)  # 10 s, 30.7 M samples
    assert len(load_audio(tmp_path / "dxd.flac")) == 10 * SAMPLE_RATE  # no limit: read a block at a time
    with pytest.raises(AudioLimitError, match=r"dxd.flac: 10 s of 8 channels at 384000 Hz: 30.7 M samples to decode, "
                                              r"over the limit of 28.8 M \(300 s of 48 kHz stereo\)"):
        list(stream_audio(tmp_path / "dxd.flac", max_seconds=300))
