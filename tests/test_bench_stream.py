"""scripts/bench_stream.py runs on tiny settings and prints its tables (timings are never asserted); its word
matching gives each reference word the time of the first event that shows it."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import speak

from asr.core.audio import audio_duration
from asr.core.paths import ASSETS
from asr.inference.streaming import StreamEvent

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_stream.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_stream", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def manifest(tmp_path) -> Path:
    """Two espeak-ng utterances in a manifest."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install.sh")
    rows = []
    for i, text in enumerate(["the cat sat on the mat", "open the door and turn left"]):
        speak(text, tmp_path / f"{i}.flac")
        rows.append({"audio_filepath": f"{i}.flac", "duration": audio_duration(tmp_path / f"{i}.flac"), "text": text})
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def model(request) -> list:
    """--model: the shipped streaming model when it is there, else the tiny random one of conftest with the shipped
    LM (it has none beside it)."""
    shipped = ASSETS / "streaming.onnx"
    if shipped.is_file():
        return ["--model", shipped]
    return ["--model", request.getfixturevalue("streaming_onnx"), "--lm", ASSETS / "default.lm.bin"]


def run(*args) -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def table(output: str, title: str) -> list[list[str]]:
    """The cells of the rows of the markdown table after the heading that starts with `title`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"### {title}"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    header, rule, *body = rows
    assert all(set(cell) == {"-"} for cell in rule)
    return [header, *body]


def is_number(cell: str) -> bool:
    try:
        float(cell.rstrip("%x"))
        return True
    except ValueError:
        return False


def test_bench_stream_prints_latency_wer_rtf_and_memory(manifest, model):
    output = run(manifest, *model, "--chunk-ms", "100", "--hours", "0.005")
    header, *rows = table(output, "Partial latency")
    assert header == ["manifest", "finals", "words", "never shown", "p50 ms", "p95 ms", "mean ms", "targets met"]
    assert [row[:2] for row in rows] == [["tiny", "greedy"], ["tiny", "beam+LM"]]
    for row in rows:  # every aligned word is either shown (with a latency) or counted as never shown
        assert int(row[2]) + int(row[3]) == 12
        assert all(is_number(cell) for cell in row[4:7]) if int(row[2]) else row[4:7] == ["-"] * 3

    header, *rows = table(output, "WER")
    assert header == ["manifest", "decoder", "utterances", "words", "streaming WER", "bidirectional WER", "ratio"]
    assert [row[:4] for row in rows] == [["tiny", "greedy", "2", "12"], ["tiny", "beam+LM", "2", "12"]]
    assert all(is_number(cell) for row in rows for cell in row[4:6])

    header, *rows = table(output, "Real-time factor")
    assert [row[:3] for row in rows] == [["greedy", "1", "100"], ["beam+LM", "1", "100"]]
    for row in rows:
        assert int(row[3]) >= 2 * 15  # two utterances of over 1.5 s, 0.5 s of silence after each, 100 ms a feed
        assert all(is_number(cell) and float(cell) >= 0 for cell in row[4:8])

    header, *rows = table(output, "Memory")
    assert header == ["at", "audio s", "events", "RSS MB"]
    assert [row[0] for row in rows] == ["start", "10 %", "50 %", "100 %"]  # 18 s: no 1 min mark
    assert float(rows[-1][1]) == 18
    assert all(float(row[3]) > 50 for row in rows)  # onnxruntime and the model


def test_bench_stream_parts_can_be_skipped_and_json(manifest, model):
    report = json.loads(run(manifest, *model, "--hours", "0.001", "--decoders", "greedy", "--skip-latency",
                            "--skip-wer", "--json"))
    assert set(report) == {"config", "rtf", "memory"}
    assert [row["decoder"] for row in report["rtf"]] == ["greedy"]
    assert report["rtf"][0]["mean_rtf"] > 0
    assert [row["at"] for row in report["memory"]["rows"]] == ["start", "10 %", "50 %", "100 %"]


def test_a_word_appears_in_the_first_event_that_shows_it():
    first_shown = bench_module().first_shown
    events = [(0.4, StreamEvent("partial", "THE", 0, 0.4)), (0.7, StreamEvent("partial", "THE CAD", 0, 0.7)),
              (0.9, StreamEvent("partial", "THE CAT", 0, 0.9)),
              (1.5, StreamEvent("final", "THE CAT SAT", 0, 1.5)),  # the endpoint: the next utterance starts
              (2.0, StreamEvent("partial", "ON", 1.5, 2.0)), (2.6, StreamEvent("final", "ON A", 1.5, 2.6))]
    assert first_shown("THE CAT SAT ON THE MAT", events) == [0.4, 0.9, 1.5, 2.0, None, None]
