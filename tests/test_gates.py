"""`asr inspect gates`, the word alignment under its plot, and the per-layer gradient norms of training."""

import json

import pytest
import torch
from conftest import SENTENCES

from asr.cli import main
from asr.core.audio import write_audio
from asr.core.bundle import save_bundle
from asr.core.decoding import word_alignment
from asr.core.model import DeepSpeech2, output_lengths
from asr.core.text import CharTokenizer, SentencePieceTokenizer, train_sentencepiece
from asr.training.config import load_experiment_config
from asr.training.module import layer_grad_norms


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DeepSpeech2(load_experiment_config("tiny").model).eval()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    """A random tiny model bundle and 1.3 s of a chirp in noise."""
    root = tmp_path_factory.mktemp("gates")
    bundle = save_bundle(root / "model.safetensors", model, CharTokenizer())
    t = torch.arange(20800) / 16000
    wav = root / "chirp.wav"
    write_audio(wav, 0.3 * torch.sin(2 * torch.pi * (200 + 400 * t) * t) + 0.01 * torch.randn(len(t)))
    return bundle, wav


def output_steps(model, samples: int) -> int:
    return int(output_lengths(model.cfg, torch.tensor([samples])))


@pytest.mark.parametrize("layer, direction", [(0, "forward"), (1, "backward")])
def test_inspect_gates_writes_a_plot_and_the_curves(model, files, tmp_path, capsys, layer, direction):
    bundle, wav = files
    png = tmp_path / "gates.png"
    assert main(["inspect", "gates", str(wav), "--model", str(bundle), "--layer", str(layer),
                 "--direction", direction, "--units", "8", "--out", str(png), "--format", "json"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads(capsys.readouterr().out)
    steps = output_steps(model, 20800)
    assert (curves["plot"], curves["layer"], curves["direction"]) == (str(png), layer, direction)
    for name in ("forget", "input", "output"):
        assert len(curves[name]) == steps and all(0 <= v <= 1 for v in curves[name]), name
    assert len(curves["time"]) == len(curves["cell_norm"]) == steps and min(curves["cell_norm"]) >= 0
    assert curves["time"][-1] == pytest.approx((steps - 0.5) * 0.02)  # 10 ms hop x time stride 2
    assert len(curves["units"]) == 8 and all(len(row) == steps for row in curves["hidden"])


def test_inspect_gates_prints_the_plot_path_and_refuses_a_missing_layer_or_too_little_audio(files, tmp_path, capsys):
    bundle, wav = files
    png = tmp_path / "plots" / "g.png"
    assert main(["inspect", "gates", str(wav), "--model", str(bundle), "--out", str(png)]) == 0
    assert capsys.readouterr().out.strip() == str(png) and png.stat().st_size > 0
    assert main(["inspect", "gates", str(wav), "--model", str(bundle), "--layer", "2"]) == 2
    assert "layer 2: the model has LSTM layers 0 to 1" in capsys.readouterr().err
    short = tmp_path / "short.wav"
    write_audio(short, torch.zeros(300))
    assert main(["inspect", "gates", str(short), "--model", str(bundle)]) == 2
    assert f"{short}: 0.019 s of audio is too short" in capsys.readouterr().err


def test_word_alignment_spans_the_steps_of_each_word():
    chars = CharTokenizer()
    path = [0 if c == "_" else chars.vocab.index(c) for c in "_HH_I||_YOO_U_|_L_L"]
    assert word_alignment(path, chars) == [("HI", 1, 5), ("YOU", 8, 13), ("LL", 16, 19)]


def test_word_alignment_starts_words_at_sentencepiece_word_pieces(tmp_path):
    sp = SentencePieceTokenizer.from_file(
        train_sentencepiece(SENTENCES, tmp_path / "sp.model", vocab_size=40, model_type="bpe"))
    ids, first = sp.encode("HELLO WORLD"), len(sp.encode("HELLO"))
    path = [0] + [i for token in ids for i in (token, token, 0)]  # each piece held two steps, then a blank
    assert word_alignment(path, sp) == [("HELLO", 1, 3 * first), ("WORLD", 3 * first + 1, 3 * len(ids))]


def test_gradient_norms_are_logged_per_layer(model):
    waves, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    model.zero_grad()
    model(waves, lengths)[0].sum().backward()
    norms = layer_grad_norms(model)
    assert set(norms) == {"grad_norm/convs.0", "grad_norm/convs.1", "grad_norm/rnns.0", "grad_norm/rnns.1",
                          "grad_norm/norms.0", "grad_norm/norms.1", "grad_norm/head"}
    rnn0 = torch.cat([p.grad.flatten() for p in model.rnns[0].parameters()])
    torch.testing.assert_close(norms["grad_norm/rnns.0"], rnn0.norm(), rtol=1e-4, atol=0)
    model.zero_grad()
