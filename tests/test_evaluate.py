"""Scoring manifests with `asr evaluate` and `asr tune-lm`: each manifest line is an utterance of its own, also
when two lines name the same audio file; a manifest with nothing to score is an error, not a WER of 0%."""

import json

import pytest
import torch
from conftest import tone

from asr.cli import main
from asr.core.audio import write_audio
from asr.core.bundle import save_bundle
from asr.core.manifest import read_manifest
from asr.core.model import DeepSpeech2
from asr.core.text import CharTokenizer
from asr.inference.transcribe import load_model
from asr.inference.tuning import dev_log_probs
from asr.training.config import load_experiment_config

torch.set_num_threads(1)
TEXTS = ["ONE TWO THREE FOUR FIVE", "SIX", "SEVEN EIGHT"]


@pytest.fixture
def setup(tmp_path):
    """(a tiny random model's bundle, a manifest of three lines: the first and the last name the same file)."""
    torch.manual_seed(0)
    model = save_bundle(tmp_path / "tiny.safetensors", DeepSpeech2(load_experiment_config("tiny").model).eval(),
                        CharTokenizer())
    for name in ("a.wav", "b.wav"):
        write_audio(tmp_path / name, tone(seconds=1.0))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": audio, "duration": 1.0, "text": text}) + "\n"
                                for audio, text in zip(["a.wav", "b.wav", "a.wav"], TEXTS)))
    return model, manifest


def test_evaluate_scores_each_manifest_line_against_its_own_text(setup, tmp_path, capsys):
    model, manifest = setup
    code = main(["evaluate", str(manifest), "--model", str(model), "--device", "cpu", "--format", "json",
                 "--out", str(tmp_path / "r.jsonl")])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [row["reference"] for row in rows] == TEXTS
    assert [row["words"] for row in rows] == [5, 1, 2]
    assert json.loads(capsys.readouterr().out)["words"] == 8


def test_tune_lm_takes_each_manifest_line_as_its_own_utterance(setup):
    model, manifest = setup
    assert dev_log_probs(load_model(model, "cpu"), read_manifest(manifest)).references == TEXTS


def test_evaluate_refuses_an_empty_manifest(setup, tmp_path, capsys):
    model, manifest = setup
    (tmp_path / "empty.jsonl").write_text("\n")
    code = main(["evaluate", str(manifest), str(tmp_path / "empty.jsonl"), "--model", str(model), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert f"asr evaluate: error: {tmp_path / 'empty.jsonl'}: no utterances in the manifest, nothing to score" in err
