"""Fuzzing with hypothesis. The audio path: random bytes as files and random audio-like arrays (as files and
as arrays) go through load_audio, the front-ends and Recognizer.transcribe; the only exception allowed is
AudioError. Model files: random JSON of any shape and size as the bundle's config, tokenizer and safetensors
header go through load_bundle under a cap on memory; the only exception allowed is BundleError."""

import json
import resource
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from asr.core.audio import AUDIO_EXTENSIONS, AudioError, audio_duration, load_audio
from asr.core.bundle import BundleError, load_bundle, save_bundle
from asr.core.features import Frontend, FrontendConfig, frame_lengths
from asr.core.model import DeepSpeech2
from asr.core.text import CharTokenizer
from asr.inference.torch_network import TorchNetwork
from asr.inference.transcribe import Recognizer
from asr.training.config import load_experiment_config

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
    return Recognizer(TorchNetwork(model, CharTokenizer()))


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


# JSON values of every kind and size: numbers past any layer size (and NaN, infinities), strings, nesting
NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.tuples(
    st.integers(-2, 2), st.sampled_from([1, 10**3, 10**6, 10**9, 2**63, 10**30])).map(lambda pair: pair[0] * pair[1]))
JSON = st.recursive(st.none() | st.booleans() | NUMBERS | st.text(max_size=30), lambda inner: st.lists(
    inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=30)
SETTINGS = ["rnn_layers", "rnn_hidden", "rnn_merge", "conv_channels", "conv_kernels", "conv_strides", "vocab_size",
            "dropout", "frontend", "frontend.kind", "frontend.n_mels", "frontend.n_mfcc", "frontend.win_ms",
            "frontend.hop_ms", "frontend.freq_masks", "frontend.time_masks"]
DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "C64", "X9"]


@contextmanager
def memory_cap(extra: int = 2**30):
    """At most `extra` bytes of address space past what the process holds now: a loader that believed a file's
    metadata would fail here, rather than fill the machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """(metadata, tensors) of a tiny model's bundle, to tamper with."""
    torch.manual_seed(0)
    model = DeepSpeech2(load_experiment_config("tiny").model)
    path = save_bundle(tmp_path_factory.mktemp("bundle") / "tiny.safetensors", model, CharTokenizer())
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata(), {name: f.get_tensor(name) for name in f.keys()}


def loads_or_is_refused(path: Path) -> None:
    """load_bundle gives a model or a BundleError naming the file, under the memory cap."""
    with memory_cap():
        try:
            model, tokenizer = load_bundle(path)
        except BundleError as err:
            assert str(err).startswith(f"{path}: ")
            return
    assert model.head.out_features == len(tokenizer)


@settings(FUZZ, max_examples=150)
@example(changes=[("rnn_hidden", 3 * 10**4)], config=None, tokenizer=None)  # each one a case once seen to fail
@example(changes=[("frontend.win_ms", 1e308), ("rnn_layers", 10**6)], config=None, tokenizer=None)
@example(changes=[("rnn_hidden", 10**30)], config=None, tokenizer=["char"])
@given(changes=st.lists(st.tuples(st.sampled_from(SETTINGS), NUMBERS | JSON), max_size=4), config=st.none() | JSON,
       tokenizer=st.none() | JSON)
def test_random_json_as_a_bundle_config_or_tokenizer_loads_or_is_refused(tiny_bundle, changes, config, tokenizer):
    metadata, tensors = tiny_bundle
    settings = json.loads(metadata["model_config"]) if config is None else config
    for key, value in changes if isinstance(settings, dict) else []:
        *section, leaf = key.split(".")
        node = settings.get(section[0]) if section else settings
        if isinstance(node, dict):
            node[leaf] = value
    crafted = metadata | {"model_config": json.dumps(settings)}
    if tokenizer is not None:
        crafted["tokenizer"] = json.dumps(tokenizer)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.safetensors"
        save_file(tensors, str(path), metadata=crafted)
        loads_or_is_refused(path)


@FUZZ
@given(header=st.dictionaries(st.text(max_size=12), JSON, max_size=4), tensors=st.dictionaries(
    st.text(max_size=30), st.fixed_dictionaries({"dtype": st.sampled_from(DTYPES) | JSON, "shape": st.lists(
        NUMBERS, max_size=4) | JSON, "data_offsets": st.lists(NUMBERS, min_size=2, max_size=2) | JSON}), max_size=4),
       metadata=st.none() | st.dictionaries(st.text(max_size=12), st.text(max_size=30) | JSON, max_size=4),
       data=st.binary(max_size=2048), padding=st.integers(0, 16))
def test_a_random_safetensors_header_is_refused(header, tensors, metadata, data, padding):
    text = json.dumps({**header, **tensors, **({} if metadata is None else {"__metadata__": metadata})})
    raw = text.encode() + b" " * padding
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.safetensors"
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
        loads_or_is_refused(path)
