"""Streaming models: the network a window at a time gives the whole recording's log-probs, in torch and ONNX; outputs
never read past the model's lookahead; a bidirectional model is converted and refused as it should be; endpoints
split utterances."""

import json

import numpy as np
import pytest
import torch

from asr.core.config import ConfigError
from asr.core.model import DeepSpeech2
from asr.core.model_config import ModelConfig, output_length, stream_geometry
from asr.core.paths import ASSETS
from asr.core.text import CharTokenizer
from asr.inference.export import export
from asr.inference.streaming import EndpointConfig, LogProbStream
from asr.inference.transcribe import load_model
from tests.conftest import speak, streaming_model

SECONDS = 2.3
CHUNKS = [1, 160, 161, 480, 1600, 4000, 16000 * 5]  # a sample, one frame hop, ... several seconds


def random_wave(seconds: float = SECONDS, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000) + 37) * 0.1).astype(np.float32)


def streamed(step_network, wave: np.ndarray, chunks, min_steps: int = 1) -> np.ndarray:
    """The log-probs (T, V) of `wave` fed in pieces of the sizes `chunks` gives in turn (cycled)."""
    stream, out, start, sizes = LogProbStream(step_network, min_steps), [], 0, iter(np.resize(chunks, len(wave)))
    while start < len(wave):
        size = int(next(sizes))
        out.append(stream.feed(wave[start:start + size]))
        start += size
    return np.concatenate(out + [stream.finish()])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return export(streaming_model(), CharTokenizer(), tmp_path_factory.mktemp("bundle") / "s.safetensors", "bundle")


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_streaming_equals_whole_utterance(kind, chunk, streaming_onnx, bundle):
    recognizer = load_model(streaming_onnx if kind == "onnx" else bundle)
    wave = random_wave()
    whole, lengths = recognizer.log_probs([wave])  # (1, T, V)
    out = streamed(recognizer.network.streaming(), wave, [chunk])
    assert out.shape == whole[0].shape == (lengths[0], 29)
    np.testing.assert_allclose(out, whole[0], atol=1e-4)


def test_streaming_chunks_of_varied_sizes_and_min_steps(streaming_onnx):
    recognizer = load_model(streaming_onnx)
    for seconds in (0.01, 0.05, 0.4, 3.0):  # shorter than one window, one step, a few, many
        wave = random_wave(seconds, seed=1)
        whole, lengths = recognizer.log_probs([wave])
        for min_steps in (1, 7):
            out = streamed(recognizer.network.streaming(), wave, [17, 3000, 1, 800, 160], min_steps)
            assert len(out) == lengths[0] == output_length(recognizer.network.cfg, len(wave))
            np.testing.assert_allclose(out, whole[0, :lengths[0]], atol=1e-4)


def test_outputs_read_no_further_ahead_than_the_lookahead():
    model = streaming_model(lookahead=2)
    geometry, wave = stream_geometry(model.cfg), torch.from_numpy(random_wave())
    changed = wave.clone()
    changed[16000:] = torch.randn(len(wave) - 16000)  # the audio from 1 s on
    with torch.no_grad():
        before, after = (model(w[None], torch.tensor([len(w)]))[0][0] for w in (wave, changed))
    # the last step whose frames (and its lookahead steps' frames) all end before sample 16000
    last_frame = (16000 - geometry.n_fft) // geometry.hop
    safe = (last_frame - geometry.right_frames) // geometry.step_frames - geometry.lookahead
    torch.testing.assert_close(before[:safe + 1], after[:safe + 1])
    assert not torch.allclose(before[safe + 8], after[safe + 8])


def test_a_bidirectional_model_cannot_stream(tmp_path):
    model = DeepSpeech2(ModelConfig(rnn_layers=1, rnn_hidden=8, conv_channels=[2, 2]))
    recognizer = load_model(export(model, CharTokenizer(), tmp_path / "bi.onnx", "onnx"))
    with pytest.raises(ConfigError, match="not a streaming model"):
        recognizer.stream()
    assert not (tmp_path / "bi.stream.onnx").exists()


def test_a_forward_only_model_that_normalises_per_utterance_cannot_stream(tmp_path):
    cfg = ModelConfig(rnn_layers=1, rnn_hidden=8, conv_channels=[2, 2], rnn_bidirectional=False)  # normalize: True
    recognizer = load_model(export(DeepSpeech2(cfg), CharTokenizer(), tmp_path / "fwd.safetensors", "bundle"))
    with pytest.raises(ConfigError, match="normalises its features over each whole utterance"):
        recognizer.stream()


def test_export_describes_the_step_graph(streaming_onnx):
    info = json.loads(streaming_onnx.with_name("stream.onnx.json").read_text())
    assert info["stream"]["graph"] == "stream.stream.onnx"
    assert info["stream"]["geometry"] == {"hop": 160, "n_fft": 512, "step_frames": 3, "left_frames": 14,
                                          "right_frames": 14, "lookahead": 1}


def test_lookahead_starts_as_the_identity():
    model = streaming_model()
    layer = type(model.lookahead)(6, 3)
    x = torch.randn(2, 9, 6)
    torch.testing.assert_close(layer(x, torch.tensor([9, 5])), x * (torch.arange(9) < torch.tensor([[9], [5]]))[..., None])


def test_lookahead_needs_a_forward_only_model():
    with pytest.raises(ConfigError, match="lookahead"):
        ModelConfig(lookahead=2)
    with pytest.raises(ConfigError, match="lookahead"):
        ModelConfig(rnn_bidirectional=False, lookahead=-1)


def test_global_normalisation_uses_the_statistics():
    model = streaming_model()
    wave = torch.from_numpy(random_wave())[None]
    feats, frames = model.frontend(wave, torch.tensor([wave.shape[1]]))
    raw = model.frontend.spectral_features(wave)
    expected = (raw - model.frontend.feature_mean[:, None]) / model.frontend.feature_std[:, None]
    torch.testing.assert_close(feats, expected)


SHIPPED = ASSETS / "streaming.onnx"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped streaming model in asr/assets")
def test_endpoints_split_two_utterances(tmp_path):
    recognizer = load_model("streaming")
    speak("open the door", tmp_path / "a.flac")
    speak("turn left now", tmp_path / "b.flac")
    from asr.core.audio import load_audio

    silence = np.zeros(int(1.5 * 16000), dtype=np.float32)
    first, second = load_audio(tmp_path / "a.flac"), load_audio(tmp_path / "b.flac")
    wave = np.concatenate([silence[:8000], first, silence, second, silence[:4000]])
    stream = recognizer.stream(EndpointConfig(silence=0.6))
    events = [e for start in range(0, len(wave), 1600) for e in stream.feed(wave[start:start + 1600])]
    events += stream.finish()
    finals = [e for e in events if e.type == "final"]
    assert len(finals) == 2, [e.to_dict() for e in events]
    boundary = (8000 + len(first) + len(silence) / 2) / 16000
    assert finals[0].end <= boundary + 0.6 and finals[1].start >= finals[0].end
    assert all(finals[0].start <= w.start < w.end <= boundary for w in finals[0].words)
    assert all(w.start >= finals[0].end for w in finals[1].words)
    assert events[0].type == "partial"  # words appear before the speaker pauses
    assert finals[0].words and finals[1].words
    whole = recognizer.stream(EndpointConfig(silence=0.6))  # the same audio in one piece: the same finals
    in_one = [e for e in whole.feed(wave) + whole.finish() if e.type == "final"]
    assert [(e.text, e.words) for e in in_one] == [(e.text, e.words) for e in finals]


def test_gates_of_a_streaming_model_show_its_one_direction():
    from asr.inspection.gates import trace_layer

    model, wave = streaming_model(), torch.from_numpy(random_wave(0.5))
    _, log_probs, acts = trace_layer(model, wave, layer=1, direction="forward")
    assert acts.hidden.shape == (len(log_probs), 16)
    with pytest.raises(ConfigError, match="forward only"):
        trace_layer(model, wave, layer=1, direction="backward")
