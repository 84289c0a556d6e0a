"""recipes/digits/run.sh end to end, as a user runs it, on a dataset laid out like the Free Spoken Digit
Dataset (8 kHz DIGIT_SPEAKER_TAKE.wav files and a manifest with a split field) spoken by espeak-ng."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr.core.audio import load_audio, write_audio
from asr.core.manifest import read_manifest

pytestmark = pytest.mark.slow

RUN = Path(__file__).resolve().parent.parent / "recipes" / "digits" / "run.sh"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TAKES = {0: "test", 5: "train", 10: "train"}  # FSDD's split field; prepare.py holds takes 5-9 out as dev
VOICES = {"us": "en-us", "gb": "en-gb"}  # speaker name -> espeak-ng voice


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fsdd")
    (root / "recordings").mkdir()
    rows = []
    for speaker, voice in VOICES.items():
        for digit, word in enumerate(DIGITS):
            for take, split in TAKES.items():
                name = f"recordings/{digit}_{speaker}_{take}.wav"
                wav = root / "spoken.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(150 + 5 * take), "-w", str(wav), word],
                               check=True, capture_output=True)
                wave = load_audio(wav, sample_rate=8000)
                write_audio(root / name, wave, sample_rate=8000)
                rows.append({"audio_filepath": name, "duration": len(wave) / 8000, "text": word, "speaker": speaker,
                             "split": split})
    (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root / "manifest.jsonl"


def test_run_sh_splits_trains_and_scores_greedy_and_by_choice(fsdd, tmp_path):
    data, exp = tmp_path / "data", tmp_path / "exp"
    env = os.environ | {"FSDD": str(fsdd), "DATA": str(data), "EXP": str(exp), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(RUN), "prepare", "trainer.max_epochs=2", "data.max_batch_seconds=5"],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    splits = {name: read_manifest(data / f"{name}.jsonl") for name in ("train", "dev", "test")}
    takes = {name: {u.audio_filepath.stem.rsplit("_", 1)[1] for u in rows} for name, rows in splits.items()}
    assert takes == {"train": {"10"}, "dev": {"5"}, "test": {"0"}}
    assert all(len(rows) == 20 for rows in splits.values())
    assert (exp / "model.safetensors").is_file()
    logged = csv.DictReader((exp / "csv" / "version_0" / "metrics.csv").open())
    assert {row["epoch"] for row in logged if row["val/wer"]} == {"0", "1"}  # the override reached asr train

    scores = (exp / "scores.txt").read_text().splitlines()
    assert scores[0] == "# asr evaluate --decoder greedy" and scores[2].startswith(f"# asr evaluate --choices {exp}")
    assert all(line.startswith(f"{data}/test.jsonl\tWER ") and "/20 utterances exactly right" in line
               for line in scores[1::2])
    choices = [json.loads(line)["hypothesis"] for line in (exp / "test.choice.jsonl").read_text().splitlines()]
    assert len(choices) == 20 and set(choices) <= {word.upper() for word in DIGITS}  # always one of the ten


def test_run_sh_refuses_overrides_it_would_not_use(tmp_path):
    env = os.environ | {"EXP": str(tmp_path / "exp")}
    result = subprocess.run(["bash", str(RUN), "evaluate", "trainer.max_epochs=2"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "trainer.max_epochs=2: config overrides are for the train stage" in result.stderr
    assert not (tmp_path / "exp").exists()  # refused before any stage ran


@pytest.mark.parametrize("dataset", ["manifest.jsonl", "recordings"])
def test_run_sh_runs_one_stage_with_the_python_it_is_given(fsdd, tmp_path, dataset):
    elsewhere = tmp_path / "bin"  # a python3 first on the PATH that is not the one asr is installed in
    elsewhere.mkdir()
    (elsewhere / "python3").write_text("#!/bin/sh\necho 'not the Python asr is installed in' >&2\nexit 3\n")
    (elsewhere / "python3").chmod(0o755)
    env = os.environ | {"FSDD": str(fsdd.with_name(dataset)), "DATA": str(tmp_path / "data"),
                        "EXP": str(tmp_path / "exp"), "PYTHON": sys.executable,
                        "PATH": f"{elsewhere}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(RUN), "prepare", "prepare"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    splits = {name: read_manifest(tmp_path / "data" / f"{name}.jsonl") for name in ("train", "dev", "test")}
    assert {name: sorted((u.audio_filepath.name, u.text) for u in rows) for name, rows in splits.items()} == {
        name: sorted((f"{digit}_{speaker}_{take}.wav", word) for digit, word in enumerate(DIGITS) for speaker in VOICES)
        for name, take in (("train", 10), ("dev", 5), ("test", 0))}
    assert "== stage train" not in result.stderr and not (tmp_path / "exp").exists()  # prepare alone


def test_run_sh_without_the_dataset_says_where_it_looked_and_which_variable_to_set(tmp_path):
    env = os.environ | {"FSDD": str(tmp_path / "fsdd" / "manifest.jsonl"), "DATA": str(tmp_path / "data")}
    result = subprocess.run(["bash", str(RUN), "prepare", "prepare"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"no FSDD dataset at {tmp_path / 'fsdd' / 'manifest.jsonl'}" in result.stderr
    assert "set FSDD=" in result.stderr and not (tmp_path / "data").exists()
