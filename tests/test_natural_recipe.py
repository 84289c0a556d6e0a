"""The natural recipe's manifests: Kokoro training rows without a dev voice or a dev/test sentence, nested curve
subsets, and the recipe's refusal to start without its data."""

import json
import subprocess
import sys
from pathlib import Path

from asr.core.manifest import read_manifest

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "natural"


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def kokoro_row(i: int, split: str, voice: list, seconds: float = 600.0) -> dict:
    speaker = voice[0][0] if len(voice) == 1 else f"{voice[0][0]}+{voice[1][0]}@{voice[0][1]}"
    return {"audio_filepath": f"audio/{i}.ogg", "duration": seconds, "text": f"SENTENCE NUMBER {i}",
            "speaker": speaker, "voice": voice, "speed": 1.0, "split": split}


def prepare(tmp_path: Path, shared: list[dict], made: list[dict]) -> subprocess.CompletedProcess:
    write_rows(tmp_path / "kokoro" / "manifest.jsonl", shared)
    write_rows(tmp_path / "made" / "train.jsonl", made)
    write_rows(tmp_path / "cathy" / "manifest.jsonl", [
        {"audio_filepath": f"audio/c{i}.ogg", "duration": 3.0, "text": f"SENTENCE NUMBER {i}", "speaker": "cathy"}
        for i in (1, 50, 51)])
    real_dev = write_rows(tmp_path / "real-dev.jsonl", [
        {"audio_filepath": "a.wav", "duration": 2.0, "text": "Sentence number 51.", "speaker": "LJ"}])
    test = write_rows(tmp_path / "test.jsonl", [{"audio_filepath": "t.wav", "duration": 2.0, "text": "SENTENCE NUMBER 3"}])
    return subprocess.run([sys.executable, str(RECIPE / "prepare.py"), str(tmp_path / "out"), "--kokoro",
                           str(tmp_path / "kokoro"), "--kokoro-made", str(tmp_path / "made"), "--cathy",
                           str(tmp_path / "cathy"), "--real-dev", str(real_dev), "--held-out", str(test),
                           "--hours", "0.3", "0.5"], capture_output=True, text=True, timeout=120)


def test_prepare_keeps_dev_voices_and_sentences_out_of_training(tmp_path):
    shared = [kokoro_row(i, "dev", [["af_sky", 1.0]]) for i in (1, 2)]
    shared += [kokoro_row(i, "train", [["af_bella", 0.6], ["am_adam", 0.4]]) for i in (3, 4)]
    made = [kokoro_row(i, "train", [["bf_emma", 1.0]]) for i in (5, 6, 7, 51)]
    result = prepare(tmp_path, shared, made)
    assert result.returncode == 0, result.stderr
    out = {p.stem: read_manifest(p) for p in (tmp_path / "out").glob("*.jsonl")}
    texts = {name: [u.text.split()[-1] for u in rows] for name, rows in out.items()}
    assert texts["kokoro-dev"] == ["1", "2"] and texts["real-dev"] == ["51."]
    assert texts["kokoro-train"] == ["4", "5", "6", "7"]  # 3: a test sentence, 51: a real-dev one
    assert texts["kokoro-train-0.3h"] == ["4", "5"] and texts["kokoro-train-0.5h"] == ["4", "5", "6"]
    assert texts["cathy"] == ["50"]  # 1 is read in the Kokoro dev set, 51 in real-dev
    assert all(u.audio_filepath.is_absolute() for u in out["kokoro-train"])


def test_prepare_stops_at_a_training_row_spoken_by_a_dev_voice(tmp_path):
    made = [kokoro_row(5, "train", [["bf_emma", 1.0]]), kokoro_row(6, "train", [["am_adam", 0.7], ["bm_v0lewis", 0.3]])]
    result = prepare(tmp_path, [kokoro_row(1, "dev", [["af_sky", 1.0]])], made)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "6.ogg is spoken by a dev voice (am_adam+bm_v0lewis@0.7)" in result.stderr


def test_run_sh_refuses_to_start_without_its_data_and_names_the_variable(tmp_path):
    kokoro = write_rows(tmp_path / "kokoro" / "manifest.jsonl", []).parent  # no voices.npz beside it
    for stage, variables in [("corpus", {"KOKORO": kokoro}), ("data", {"KOKORO": kokoro, "CATHY": tmp_path / "no"})]:
        result = subprocess.run(["bash", str(RECIPE / "run.sh"), stage, stage], capture_output=True, text=True,
                                timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable,
                                                  **{k: str(v) for k, v in variables.items()}})
        assert result.returncode != 0 and "== stage" in result.stderr
        missing = "kokoro/voices.npz" if stage == "corpus" else "no/manifest.jsonl"
        variable = list(variables)[-1]
        assert f"{missing} not found" in result.stderr and f"set {variable}" in result.stderr, result.stderr
