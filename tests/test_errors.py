"""One base for the errors a user can act on: `asr` reports an AsrError in one line and exits 2; any other
exception is a bug and surfaces with its traceback, never dressed up as bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

import torch

import asr.inspection.check
from asr.cli import main
from asr.core.audio import SAMPLE_RATE, AudioError, write_audio
from asr.core.bundle import BundleError
from asr.core.config import ConfigError
from asr.core.errors import AsrError
from asr.core.lm import LMError
from asr.core.manifest import ManifestError
from asr.core.model import DeepSpeech2
from asr.core.text import CharTokenizer
from asr.corpora.librispeech import DownloadError
from asr.inference.export import export, info_path
from asr.training.config import load_experiment_config


@pytest.mark.parametrize("error", [AudioError, BundleError, ConfigError, DownloadError, LMError, ManifestError])
def test_every_user_error_is_an_asr_error(error):
    assert issubclass(error, AsrError)


@pytest.fixture
def manifest(tmp_path):
    write_audio(tmp_path / "a.wav", np.zeros(SAMPLE_RATE, np.float32))
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "HI"}) + "\n")
    return tmp_path / "m.jsonl"


@pytest.mark.parametrize("argv, message", [
    (["train", "tiny", "data.seed=1"], "unknown config key 'data.seed'"),  # ConfigError
    (["train", "tiny", "data.min_duration=5", "data.max_duration=1"], "need 0 <= min_duration <= max_duration"),
    (["evaluate", "{empty}"], "no utterances in the manifest"),  # ManifestError
    (["transcribe", "{wav}", "--model", "{onnx}"], "model.onnx.json: damaged deployment info ('model_config')"),
    (["train", "{latin1}"], "latin1.yaml: not UTF-8 text"),  # a UnicodeDecodeError is a ValueError, not an AsrError
    (["prepare", "librispeech", "{corpus}", "{corpus}/out"], "1-2.trans.txt: not UTF-8 text (byte 0xc9 at offset 9)"),
    # each message names the real cause (issue 31, item 14)
    (["transcribe", "{wav}", "--model", "{corpus}"], "LibriSpeech: is a directory, not a model file"),
    (["transcribe", "{wav}", "--model", "{cut_json}"], "cut.onnx.json: damaged deployment info (Unterminated string"),
    (["evaluate", "{wav}"], "a.wav: an audio file, not a manifest; this command takes JSON-lines manifests"),
])
def test_an_asr_error_is_one_line_and_exit_2(argv, message, manifest, capsys):
    files = {"wav": manifest.with_name("a.wav"), "empty": manifest.with_name("empty.jsonl"),
             "onnx": manifest.with_name("model.onnx")}
    files["empty"].write_text("")
    files["latin1"] = manifest.with_name("latin1.yaml")
    files["latin1"].write_bytes("seed: 0  # caf\u00e9\n".encode("latin-1"))
    files["corpus"] = manifest.parent / "LibriSpeech"
    (files["corpus"] / "dev" / "1" / "2").mkdir(parents=True)
    (files["corpus"] / "dev" / "1" / "2" / "1-2.trans.txt").write_bytes("1-2-0 CAF\u00c9\n".encode("latin-1"))
    files["onnx"].write_bytes(b"not a graph")
    files["onnx"].with_name("model.onnx.json").write_text('{"format": "onnx"}')  # its config and tokenizer missing
    files["cut_json"] = manifest.with_name("cut.onnx")
    files["cut_json"].write_bytes(b"not a graph")
    files["cut_json"].with_name("cut.onnx.json").write_text('{"format": "onnx", "model_config')  # cut short
    code = main([arg.format(**files) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"asr {argv[0]}: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_value_error_from_a_bug_is_not_reported_as_bad_input(manifest, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(asr.inspection.check, "check_manifest", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["check-manifest", str(manifest), "--config", "tiny"])
    assert "error:" not in capsys.readouterr().err


def test_a_bug_exits_with_a_traceback_not_2(manifest):
    code = ("import sys, asr.inspection.check as check\n"
            "def broken(*args, **kwargs):\n    raise ValueError('an internal bug')\n"
            "check.check_manifest = broken\n"
            "from asr.cli import main\nsys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "check-manifest", str(manifest), "--config", "tiny"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" in result.stderr and "ValueError: an internal bug" in result.stderr


@pytest.fixture(scope="module")
def onnx_info(tmp_path_factory):
    """(a tiny random model's ONNX export, its deployment info): the info right, the graph to damage."""
    torch.manual_seed(0)
    out = export(DeepSpeech2(load_experiment_config("tiny").model).eval(), CharTokenizer(),
                 tmp_path_factory.mktemp("onnx") / "tiny.onnx", "onnx")
    return out.read_bytes(), info_path(out).read_text()


@pytest.mark.parametrize("damage", [lambda graph: graph[: len(graph) // 2], lambda graph: np.random.default_rng(0)
                                    .bytes(5000), lambda graph: b""], ids=["truncated", "random", "empty"])
@pytest.mark.parametrize("command", [["transcribe", "{wav}"], ["serve", "--port", "0"]])
def test_a_damaged_onnx_graph_beside_its_valid_json_is_one_line_and_exit_2(onnx_info, damage, command, manifest,
                                                                          capsys):
    graph, info = onnx_info
    model = manifest.with_name("model.onnx")
    model.write_bytes(damage(graph))
    info_path(model).write_text(info)
    code = main([arg.format(wav=manifest.with_name("a.wav")) for arg in command] + ["--model", str(model)])
    err = capsys.readouterr().err  # (serve loads the model before it listens)
    assert code == 2 and err.startswith(f"asr {command[0]}: error: {model}: not a readable ONNX model ("), err
    assert err.count("\n") == 1
