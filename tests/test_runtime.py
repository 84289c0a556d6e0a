"""The light runtime: an ONNX export transcribed with onnxruntime and numpy, torch never imported, and what it gives
beside the torch runtime (the same network from its bundle): the same log-probs within float error, the same words."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import speak

from asr.core.audio import load_audio
from asr.core.decoding import DecoderConfig
from asr.core.paths import DEFAULT_MODEL
from asr.inference.export import export, export_lm, load_source
from asr.inference.network import OnnxNetwork
from asr.inference.torch_network import TorchNetwork
from asr.inference.transcribe import load_model

SENTENCES = ["printing in the only sense with which we are at present concerned",  # tests/data/ljspeech_300.txt
             "hello world this is a test", "open the door"]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    """The shipped model's bundle exported to ONNX, with its JSON and its LM beside it."""
    out = export(*load_source("default"), tmp_path_factory.mktemp("onnx") / "model.onnx", "onnx")
    assert export_lm("default", out)  # model.lm.bin, its lexicon and tuned weights
    return out


@pytest.fixture(scope="module")
def utterances(tmp_path_factory) -> list:
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install.sh")
    folder = tmp_path_factory.mktemp("speech")
    for i, text in enumerate(SENTENCES):
        speak(text, folder / f"{i}.flac")
    return sorted(folder.glob("*.flac"))


def run_python(code: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_importing_the_command_line_imports_no_torch():
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import asr.cli"], capture_output=True,
                             text=True, check=True).stderr  # one line per module imported
    assert "asr.cli" in imports and "torch" not in imports


def test_transcribing_an_onnx_model_with_every_format_and_decoder_imports_no_torch(onnx_model, utterances, tmp_path):
    """asr transcribe in one process: beam search with the LM copied beside the export, greedy, the choice decoder,
    JSON with word times and subtitles; then asr evaluate and asr tune-lm on a manifest of the same files."""
    choices = tmp_path / "choices.txt"
    choices.write_text("\n".join(SENTENCES) + "\n")
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": str(path), "duration": 1.0, "text": text}) + "\n"
                                for path, text in zip(utterances, SENTENCES)))
    files, model = [str(path) for path in utterances], str(onnx_model)
    runs = [["transcribe", *files, "--format", "json"], ["transcribe", *files, "--decoder", "greedy"],
            ["transcribe", files[0], "--format", "srt", "--choices", str(choices)],
            ["evaluate", str(manifest), "--format", "json"],
            ["tune-lm", "--manifest", str(manifest), "--lm", str(onnx_model.with_suffix(".lm.bin")),
             "--lm-weights", "1", "--word-scores", "0", "--jobs", "1"]]
    code = ("import sys, asr.cli\n"
            f"for argv in {runs!r}:\n"
            f"    assert asr.cli.main([*argv, '--model', {model!r}]) == 0, argv\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    out = run_python(code).stdout
    assert '{"word": "WORLD", "start": ' in out and re.search(r"\n00:00:\d\d,\d{3} --> 00:00:", out)
    assert "OPEN THE DOOR" in out
    assert '"wer": ' in out and "lm_weight 1.0\tword_score 0.0\tWER " in out


def test_the_shipped_onnx_model_gives_the_bundle_s_log_probs_and_words(utterances):
    """The two runtimes of the shipped model on one padded batch: log-probs within float error (the ONNX graph's
    convolutional STFT and folded batch norm round differently), the same words, times and confidences with the
    default decoder (beam search + LM) and greedy."""
    onnx, bundle = load_model(), load_model(DEFAULT_MODEL, "cpu")
    assert isinstance(onnx.network, OnnxNetwork) and isinstance(bundle.network, TorchNetwork)
    waves = [load_audio(path) for path in utterances]
    (onnx_probs, onnx_lengths), (torch_probs, torch_lengths) = onnx.log_probs(waves), bundle.log_probs(waves)
    assert np.array_equal(onnx_lengths, torch_lengths)
    valid = np.arange(onnx_probs.shape[1]) < onnx_lengths[:, None]  # (B, T)
    assert np.abs(onnx_probs - torch_probs)[valid].max() < 2e-3
    for decoder in (None, DecoderConfig("greedy")):
        onnx.set_decoder(decoder)
        bundle.set_decoder(decoder)
        assert onnx.recognize(waves) == bundle.recognize(waves)
