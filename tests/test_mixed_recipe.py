"""The mixed recipe's helpers: speechocean762's manifests and the learning curve's real-speech subsets, the
unseen-engine corpus (an engine never in a training corpus), and the recipe's refusal to start without its data."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr.core.audio import SAMPLE_RATE, load_audio
from asr.core.manifest import read_manifest
from asr.corpora.synth import ENGINES, select_voices, synthesize_corpus

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "mixed"


def fake_speechocean(root: Path, speakers: int = 12, per_speaker: int = 5, seconds: float = 30.0) -> Path:
    """A manifest in speechocean762's form (speaker, split); the audio files need not exist to be split."""
    root.mkdir(parents=True)
    rows = [{"audio_filepath": f"audio/{s:04d}/{u}.ogg", "duration": seconds, "text": f"WORD {u}",
             "speaker": f"{s:04d}", "split": "dev" if s < 2 else "train"}
            for s in range(speakers) for u in range(per_speaker)]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_prepare_real_writes_splits_and_nested_whole_speaker_subsets(tmp_path):
    source = fake_speechocean(tmp_path / "so")  # 10 train speakers of 150 s: 0.42 h
    subprocess.run([sys.executable, str(RECIPE / "prepare_real.py"), str(source), str(tmp_path / "out"),
                    "--hours", "0.1", "0.2"], check=True, capture_output=True, timeout=120)
    read = {name: read_manifest(tmp_path / "out" / f"{name}.jsonl")
            for name in ("train", "dev", "train-0.1h", "train-0.2h")}
    assert {u.extra["speaker"] for u in read["dev"]} == {"0000", "0001"}
    assert len(read["train"]) == 50 and all(u.audio_filepath.is_absolute() for u in read["train"])
    speakers = {name: {u.extra["speaker"] for u in rows} for name, rows in read.items()}
    assert len(speakers["train-0.1h"]) == 3 and len(speakers["train-0.2h"]) == 5  # whole speakers to >= H hours
    assert speakers["train-0.1h"] < speakers["train-0.2h"] < speakers["train"]
    assert all(len([u for u in read["train-0.2h"] if u.extra["speaker"] == s]) == 5 for s in speakers["train-0.2h"])


def test_prepare_real_without_its_data_says_what_it_needs(tmp_path):
    result = subprocess.run([sys.executable, str(RECIPE / "prepare_real.py"), str(tmp_path / "nowhere"),
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "manifest.jsonl" in result.stderr and "SPEECHOCEAN" in result.stderr


def prepare_real(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPE / "prepare_real.py"), str(source), str(out)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("change, problem", [
    (lambda row: row.pop("speaker"), "no speaker"),
    (lambda row: row.pop("split"), "no split"),
    (lambda row: row.update(split="test"), "split 'test'"),
], ids=["no-speaker", "no-split", "split-test"])
def test_prepare_real_names_the_line_without_a_speaker_or_a_train_or_dev_split(tmp_path, change, problem):
    source = fake_speechocean(tmp_path / "so")
    manifest = source / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    change(rows[6])  # line 7
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = prepare_real(source, tmp_path / "out")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{manifest} line 7: {problem}" in result.stderr, result.stderr
    assert "a speaker and a split of train or dev" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("empty", ["train", "dev"])
def test_prepare_real_refuses_a_manifest_with_an_empty_split(tmp_path, empty):
    source = fake_speechocean(tmp_path / "so")
    manifest = source / "manifest.jsonl"
    other = "dev" if empty == "train" else "train"
    rows = [{**json.loads(line), "split": other} for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = prepare_real(source, tmp_path / "out")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{manifest}: no line has the split {empty}" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_run_sh_refuses_to_start_without_its_data_and_names_the_variable(tmp_path):
    (tmp_path / "text").mkdir()  # the text it checks first is there, in a clone with no ../shared too
    (tmp_path / "text" / "sentences.txt").write_text("HELLO WORLD\n")
    result = subprocess.run(["bash", str(RECIPE / "run.sh"), "data", "data"], capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable,
                                              "TEXT_DIR": str(tmp_path / "text"),
                                              "SPEECHOCEAN": str(tmp_path / "nowhere")})
    assert result.returncode != 0
    assert "nowhere/manifest.jsonl not found" in result.stderr and "set SPEECHOCEAN" in result.stderr


def test_the_held_out_engine_is_in_no_corpus_unless_named():
    if not all(shutil.which(p) for p in ENGINES["rhvoice"]["programs"]):
        pytest.skip("RHVoice is not installed: run scripts/install_tts.sh")
    assert not [v for v in select_voices() if v.engine == "rhvoice"]
    named = select_voices(["rhvoice"])
    assert named and {v.engine for v in named} == {"rhvoice"} and "slt" not in {v.name for v in named}


def test_the_held_out_engine_speaks(tmp_path):
    if not all(shutil.which(p) for p in ENGINES["rhvoice"]["programs"]):
        pytest.skip("RHVoice is not installed: run scripts/install_tts.sh")
    (tmp_path / "text.txt").write_text("the quick brown fox jumps over the lazy dog\nthree small boats sail home\n")
    manifests = synthesize_corpus([tmp_path / "text.txt"], tmp_path / "corpus", 0.002, voices=["rhvoice"], seed=1,
                                  jobs=1, dev_share=0.45, test_share=0.45, augment_share=0.0)
    rows = [u for m in manifests.values() for u in read_manifest(m)]
    assert rows and all(u.extra["voice"].startswith("rhvoice:") for u in rows)
    wave = load_audio(rows[0].audio_filepath)
    assert len(wave) / SAMPLE_RATE == pytest.approx(rows[0].duration, abs=0.01) and np.abs(wave).max() > 0.05
