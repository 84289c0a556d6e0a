import io

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import non_finite, tone

from asr.core.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio, write_audio

torch.set_num_threads(1)


def peak_frequency(wave: torch.Tensor, rate=SAMPLE_RATE) -> float:
    """The frequency in Hz of the largest FFT bin of a waveform (S,)."""
    spectrum = torch.fft.rfft(wave).abs()
    return float(spectrum.argmax()) * rate / len(wave)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "opus", "mp3"])
def test_round_trip(tmp_path, ext):
    path = tmp_path / f"tone.{ext}"
    write_audio(path, tone())
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert len(wave) == SAMPLE_RATE // 2
    assert audio_duration(path) == pytest.approx(0.5)
    assert abs(peak_frequency(wave) - 440) <= 2
    if ext in ("wav", "flac"):  # lossless, 16-bit
        assert torch.allclose(wave, torch.from_numpy(tone()), atol=1e-4)


def test_write_audio_accepts_tensor_and_rejects_multichannel(tmp_path):
    write_audio(tmp_path / "t.wav", torch.from_numpy(tone()))
    assert len(load_audio(tmp_path / "t.wav")) == SAMPLE_RATE // 2
    with pytest.raises(ValueError, match="mono"):
        write_audio(tmp_path / "s.wav", np.zeros((100, 2), dtype=np.float32))


def test_stereo_is_averaged(tmp_path):
    left, right = tone(440), tone(1000) * 0.5
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    wave = load_audio(tmp_path / "stereo.wav")
    assert torch.allclose(wave, torch.from_numpy((left + right) / 2), atol=1e-6)


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
