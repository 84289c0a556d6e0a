"""Fuzzing the audio path with hypothesis: random bytes as files and random audio-like arrays (as files and
as arrays) go through load_audio, the front-ends and Recognizer.transcribe; the only exception allowed is
AudioError."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, audio_duration, load_audio
from asr.features import Frontend, FrontendConfig, frame_lengths
from asr.model import DeepSpeech2
from asr.text import CharTokenizer
from asr.training import load_experiment_config
from asr.transcribe import Recognizer

torch.set_num_threads(1)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# what a recording can hold: any finite value (clipped or not), and the non-finite ones a float file can carry
SAMPLES = st.floats(allow_nan=True, allow_infinity=True, width=32)
WAVES = st.one_of(
    st.lists(SAMPLES, max_size=40).map(lambda xs: np.array(xs, dtype=np.float32)),  # 0, 1, a few samples
    st.tuples(st.integers(0, 12000), st.floats(1e-6, 1e3), st.integers(0, 2**31 - 1))
    .map(lambda a: (np.random.default_rng(a[2]).standard_normal(a[0]) * a[1]).astype(np.float32)),  # any level
)


@pytest.fixture(scope="module")
def recognizer():
    torch.manual_seed(0)
    model = DeepSpeech2(load_experiment_config("tiny").model).eval()  # random weights: only the path matters
    return Recognizer(model, CharTokenizer(), "cpu")


def check_wave(wave: torch.Tensor) -> None:
    assert wave.dtype == torch.float32 and wave.ndim == 1 and len(wave) > 0
    assert torch.isfinite(wave).all()


@FUZZ
@given(data=st.binary(max_size=4096), ext=st.sampled_from(AUDIO_EXTENSIONS), header=st.sampled_from(
    [b"", b"RIFF", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"ID3\x03\x00\x00\x00", b"\xff\xfb"]))
def test_random_bytes_give_a_waveform_or_an_audio_error(data, ext, header):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{ext}"
        path.write_bytes(header + data)
        for read in (load_audio, audio_duration):
            try:
                result = read(path)
            except AudioError as err:
                assert str(path) in str(err)
                continue
            if read is load_audio:
                check_wave(result)
            else:
                assert result > 0


@FUZZ
@given(wave=WAVES, rate=st.sampled_from([8000, 16000, 44100]))
def test_random_arrays_are_transcribed_or_refused_with_an_audio_error(recognizer, wave, rate):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.wav"
        sf.write(path, wave, rate, subtype="FLOAT")  # float samples keep NaN, inf and values beyond [-1, 1]
        errors = []
        results = list(recognizer.transcribe([path], on_error=errors.append))
    usable = len(wave) > 0 and np.isfinite(wave).all()
    assert len(results) == int(usable) and len(errors) == int(not usable)
    if usable:
        assert isinstance(results[0].text, str)
        assert results[0].duration == pytest.approx(len(wave) / rate, abs=2e-3)
    else:
        assert isinstance(errors[0], AudioError) and str(path) in str(errors[0])


@FUZZ
@given(wave=WAVES, dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int16]),
       shape=st.sampled_from(["mono", "channels"]), tensor=st.booleans())
def test_arrays_passed_directly_are_transcribed_or_refused_with_an_audio_error(recognizer, wave, dtype, shape, tensor):
    with np.errstate(all="ignore"):
        array = wave.astype(dtype)
    if shape == "channels":
        array = np.stack([array, array])  # (2, S): not a mono waveform
    errors = []
    results = list(recognizer.transcribe([torch.from_numpy(array) if tensor else array], on_error=errors.append))
    usable = shape == "mono" and dtype != np.int16 and array.size > 0 and np.isfinite(array).all()
    assert len(results) == int(usable) and len(errors) == int(not usable)
    if not usable:
        assert isinstance(errors[0], AudioError) and "<array 0>" in str(errors[0])


@FUZZ
@given(wave=WAVES.filter(lambda w: np.isfinite(w).all()), kind=st.sampled_from(["linear", "log_mel", "mfcc"]))
def test_front_ends_give_finite_features_for_any_finite_audio(wave, kind):
    cfg = FrontendConfig(kind=kind, n_mels=40)
    waves = torch.from_numpy(wave)[None]  # (1, S)
    lengths = torch.tensor([len(wave)])
    feats, frames = Frontend(cfg).eval()(waves, lengths)  # (1, F, T)
    assert frames.item() == frame_lengths(lengths, cfg).item()
    assert torch.isfinite(feats).all()
    assert feats.shape[1] == cfg.n_features
