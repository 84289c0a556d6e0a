"""Exported models (ONNX, TorchScript) and int8 quantization against the PyTorch model, on real speech."""

import json
import shutil

import jiwer
import pytest
import torch
import torchaudio
from conftest import run_asr, speak, tone
from torch import nn
from torch.ao.nn.quantized import dynamic as quantized_dynamic
from torch.nn.utils.rnn import pad_sequence

from asr.cli import main
from asr.core import config
from asr.core.audio import load_audio, write_audio
from asr.core.bundle import load_bundle, save_bundle
from asr.core.paths import DEFAULT_MODEL
from asr.core.decoding import greedy_decode
from asr.core import lm as lm_module
from asr.core.lm import build_lm, lexicon_path, own_tuned_path, read_tuned, tuned_path, write_tuned
from asr.core.model import DeepSpeech2
from asr.core.text import CharTokenizer, build_tokenizer
from asr.inference.export import export, export_lm, load_source, with_conv_spectrograms
from asr.inference.network import OnnxNetwork, info_path
from asr.inference.torch_network import TorchNetwork
from asr.inference.quantize import quantize_model
from asr.inference.transcribe import Recognizer
from asr.training.config import load_experiment_config
from asr.training.module import ASRModule

SHORT, LONG = "hello world this is a test", "the quick brown fox jumps over the lazy dog near the river bank"


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[torch.Tensor]:
    """Two real utterances of different lengths, 16 kHz waveforms (S_i,): the long one first."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install.sh")
    folder = tmp_path_factory.mktemp("speech")
    for name, text in (("long", LONG), ("short", SHORT)):
        speak(text, folder / f"{name}.flac")
    return [torch.from_numpy(load_audio(folder / name)) for name in ("long.flac", "short.flac")]


@pytest.fixture(scope="module")
def default():
    return load_bundle(DEFAULT_MODEL)


def padded(waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """waves (S_i,) -> padded batch (B, S), lengths (B,)"""
    return pad_sequence(waves, batch_first=True), torch.tensor([len(w) for w in waves])


def transcripts(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer) -> list[str]:
    return [tokenizer.decode(ids) for ids in greedy_decode(log_probs.numpy(), lengths.numpy())]


def assert_same_output(run, model, tokenizer, speech):
    """`run(waves, lengths)` (an exported model) gives the PyTorch model's log-probs and greedy transcripts on
    a padded batch, and the short utterance's rows equal those of the short utterance run alone."""
    waves, lengths = padded(speech)
    with torch.no_grad():
        expected, expected_lengths = model(waves, lengths)
        alone, _ = model(speech[1][None], lengths[1:])
    log_probs, out_lengths = run(waves, lengths)
    assert torch.equal(out_lengths, expected_lengths)
    short = int(out_lengths[1])
    assert short < log_probs.shape[1]  # the short utterance really is padded in the batch
    for b, n in enumerate(out_lengths.tolist()):
        torch.testing.assert_close(log_probs[b, :n], expected[b, :n], atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(log_probs[1, :short], alone[0], atol=2e-3, rtol=1e-3)
    assert transcripts(log_probs, out_lengths, tokenizer) == transcripts(expected, expected_lengths, tokenizer)
    assert jiwer.cer(SHORT.upper(), transcripts(log_probs, out_lengths, tokenizer)[1]) < 0.15  # real words


@pytest.mark.parametrize("kind", ["linear", "log_mel", "mfcc"])
def test_conv_spectrogram_front_end_matches_torch_stft(kind):
    cfg = load_experiment_config("tiny", [f"model.frontend.kind={kind}"]).model
    frontend = DeepSpeech2(cfg).frontend.eval()
    waves, lengths = torch.randn(2, 9000) * 0.1, torch.tensor([9000, 5000])
    expected, frames = frontend(waves, lengths)
    converted = with_conv_spectrograms(frontend)
    assert not any(isinstance(m, torchaudio.transforms.Spectrogram) for m in converted.modules())
    got, got_frames = converted(waves, lengths)
    assert torch.equal(got_frames, frames)
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-3)


def test_onnx_export_gives_the_pytorch_output_on_a_padded_batch(tmp_path, default, speech):
    ort = pytest.importorskip("onnxruntime", reason="pip install -e '.[train]'")
    model, tokenizer = default
    out = export(model, tokenizer, tmp_path / "model.onnx", "onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])

    def run(waves, lengths):
        log_probs, out_lengths = session.run(None, {"waves": waves.numpy(), "lengths": lengths.numpy()})
        return torch.from_numpy(log_probs), torch.from_numpy(out_lengths)

    assert_same_output(run, model, tokenizer, speech)
    onnx_network = OnnxNetwork(out)  # the export alone, with its JSON, makes a Recognizer
    assert onnx_network.tokenizer.vocab == tokenizer.vocab
    recognizers = Recognizer(onnx_network), Recognizer(TorchNetwork(model, tokenizer))
    exported, expected = ([(text, [(w.word, w.start, w.end) for w in words])
                           for text, words in r.recognize([w.numpy() for w in speech])]
                          for r in recognizers)
    assert exported == expected
    info = json.loads(info_path(out).read_text())
    assert info["vocab"] == tokenizer.vocab and info["blank"] == 0 and info["sample_rate"] == 16000
    assert info["output_step_seconds"] == model.cfg.output_step_seconds


def test_torchscript_export_gives_the_pytorch_output_on_a_padded_batch(tmp_path, default, speech):
    model, tokenizer = default
    out = export(model, tokenizer, tmp_path / "model.pt", "torchscript")
    loaded = torch.jit.load(str(out))
    with torch.no_grad():
        assert_same_output(loaded, model, tokenizer, speech)


def test_int8_quantizes_lstm_and_linear_layers_and_keeps_the_transcript_close(default, speech):
    model, tokenizer = default
    quantized = quantize_model(model, "int8")
    kinds = {type(m) for m in quantized.modules()}
    assert quantized_dynamic.LSTM in kinds and quantized_dynamic.Linear in kinds
    assert nn.LSTM not in kinds and nn.Linear not in kinds
    assert isinstance(model.rnns[0].forward_lstm, nn.LSTM)  # the float model is left as it was
    waves, lengths = padded(speech)
    with torch.no_grad():
        fp32 = transcripts(*model(waves, lengths), tokenizer)
        int8 = transcripts(*quantized(waves, lengths), tokenizer)
    assert jiwer.cer(fp32, int8) < 0.1


def test_cli_exports_int8_torchscript_and_transcribes_with_int8(tmp_path, default, speech):
    model, tokenizer = default
    out = tmp_path / "model.int8.pt"
    assert run_asr("export", "default", out, "--format", "torchscript", "--quantize", "int8").stdout.strip() == str(out)
    assert json.loads(info_path(out).read_text())["quantize"] == "int8"
    float_bytes = 4 * sum(p.numel() for p in model.parameters())
    assert out.stat().st_size < 0.35 * float_bytes  # int8 weights: about a quarter of float32
    waves, lengths = padded(speech)
    with torch.no_grad():
        log_probs, out_lengths = torch.jit.load(str(out))(waves, lengths)
        expected, _ = quantize_model(model, "int8")(waves, lengths)
    torch.testing.assert_close(log_probs, expected, atol=1e-4, rtol=0)

    audio = tmp_path / "short.flac"
    speak(SHORT, audio)
    text = run_asr("transcribe", audio, "--quantize", "int8", "--decoder", "greedy", "--device", "cpu").stdout
    assert jiwer.cer(SHORT.upper(), text.strip()) < 0.15


def test_int8_onnx_quantizes_lstm_and_matmul_weights_but_not_the_front_end(tmp_path, default, speech):
    onnx = pytest.importorskip("onnx", reason="pip install -e '.[train]'")
    ort = pytest.importorskip("onnxruntime", reason="pip install -e '.[train]'")
    model, tokenizer = default
    out = export(model, tokenizer, tmp_path / "model.int8.onnx", "onnx", "int8")
    nodes = {node.name: node.op_type for node in onnx.load(str(out)).graph.node}
    assert "DynamicQuantizeLSTM" in nodes.values() and "MatMulInteger" in nodes.values()
    assert "LSTM" not in nodes.values()
    assert nodes["/frontend/transform/mel_scale/MatMul"] == "MatMul"  # the filterbank stays float32
    assert out.stat().st_size < 0.35 * 4 * sum(p.numel() for p in model.parameters())
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    waves, lengths = padded(speech)
    log_probs, out_lengths = session.run(None, {"waves": waves.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        fp32 = transcripts(*model(waves, lengths), tokenizer)
    assert jiwer.cer(fp32, transcripts(torch.from_numpy(log_probs), torch.from_numpy(out_lengths), tokenizer)) < 0.1


def test_cli_refuses_an_int8_bundle_by_name(tmp_path):
    result = run_asr("export", "default", tmp_path / "m.safetensors", "--quantize", "int8", check=False)
    assert result.returncode == 2
    assert "--quantize int8 is for --format onnx and torchscript: a bundle keeps float weights" in result.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_a_checkpoint_still_exports_to_a_bundle_and_also_to_torchscript(tmp_path):
    cfg = load_experiment_config("tiny")
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    torch.manual_seed(0)
    module = ASRModule(config.to_dict(cfg), tokenizer.to_dict()).eval()
    ckpt = tmp_path / "last.ckpt"  # what Lightning's checkpoint holds that asr reads
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    waves, lengths = torch.randn(2, 12000) * 0.1, torch.tensor([12000, 7000])
    with torch.no_grad():
        expected, _ = module.model(waves, lengths)

    bundle = tmp_path / "model.safetensors"
    assert run_asr("export", ckpt, bundle, "--dtype", "float16").stdout.strip() == str(bundle)  # the old form
    with torch.no_grad():
        torch.testing.assert_close(load_bundle(bundle)[0](waves, lengths)[0], expected, atol=2e-2, rtol=0)
        scripted = torch.jit.load(str(export(*load_source(str(ckpt)), tmp_path / "m.pt", "torchscript")))
        torch.testing.assert_close(scripted(waves, lengths)[0], expected, atol=1e-5, rtol=0)


def test_an_export_of_a_model_sharing_the_default_lm_takes_the_weights_tuned_for_it(tmp_path, monkeypatch):
    monkeypatch.setattr(lm_module, "ASSETS", tmp_path)  # a package whose shipped models share default.lm.arpa
    monkeypatch.setattr(lm_module, "DEFAULT_MODEL", tmp_path / "default.safetensors")
    (tmp_path / "text.txt").write_text("HELLO WORLD\nTHE CAT SAT\n")
    shared = build_lm([tmp_path / "text.txt"], tmp_path / "default.lm.arpa", order=2, estimator="kaldingram")
    write_tuned(shared, {"lm_weight": 0.75, "word_score": -0.5})
    own_tuned_path(tmp_path / "streaming.safetensors").write_text('{"lm_weight": 1.25, "word_score": 0.5}')
    (tmp_path / "out").mkdir()
    copies = export_lm(str(tmp_path / "streaming.safetensors"), tmp_path / "out" / "s.onnx")
    assert [path.name for path in copies] == ["s.lm.arpa", "s.lm.lexicon.txt", "s.lm.tuned.json"]
    assert read_tuned(copies[0]) == {"lm_weight": 1.25, "word_score": 0.5}
    assert read_tuned(export_lm(str(tmp_path / "default.safetensors"), tmp_path / "out" / "d.onnx")[0]) == {
        "lm_weight": 0.75, "word_score": -0.5}


def test_an_export_takes_the_lm_beside_its_source_and_decodes_with_it(tmp_path, capsys):
    torch.manual_seed(0)
    source = tmp_path / "src" / "model.safetensors"
    save_bundle(source, DeepSpeech2(load_experiment_config("tiny").model).eval(), CharTokenizer())
    (tmp_path / "text.txt").write_text("HELLO WORLD\nTHE CAT SAT\n")
    lm = build_lm([tmp_path / "text.txt"], tmp_path / "src" / "model.lm.arpa", order=2, estimator="kaldingram")
    write_tuned(lm, {"lm_weight": 0.7, "word_score": -1.5})
    out = tmp_path / "out" / "tiny.onnx"
    assert main(["export", str(source), str(out), "--format", "onnx"]) == 0
    copies = [out.with_suffix(".lm.arpa"), out.with_suffix(".lm.lexicon.txt"), out.with_suffix(".lm.tuned.json")]
    assert [path.read_bytes() for path in copies] == [lm.read_bytes(), lexicon_path(lm).read_bytes(),
                                                      tuned_path(lm).read_bytes()]
    write_audio(tmp_path / "tone.wav", tone())
    assert main(["transcribe", str(tmp_path / "tone.wav"), "--model", str(out)]) == 0
    assert (f"decoding with beam search (beam 100) with LM {copies[0]} (lm_weight 0.7, word_score -1.5)"
            in capsys.readouterr().err)
