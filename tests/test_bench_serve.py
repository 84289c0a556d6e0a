"""scripts/bench_serve.py runs on tiny settings and prints its tables (timings are never asserted)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_serve.py"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not shutil.which("espeak-ng"),
                                                    reason="espeak-ng is not installed: run scripts/install.sh")]


def run(*args) -> list[str]:
    result = subprocess.run([sys.executable, str(SCRIPT), "--utterances", "2", *args, "--", "--decoder", "greedy"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()


def test_bench_serve_measures_batched_and_one_at_a_time_serving_on_the_same_requests():
    header, rule, *rows = run("--clients", "1", "2", "--requests", "2", "--rounds", "1")
    assert header.split() == ["serving", "clients", "requests", "req/s", "audio", "s/s", "p50", "s", "p95", "s", "p95",
                              "~10", "s"]
    table = [row.split() for row in rows[:4]]
    assert [(cells[-7], cells[-6]) for cells in table] == [("1", "2"), ("1", "2"), ("2", "2"), ("2", "2")]
    assert [" ".join(cells[:-7]) for cells in table] == ["batched", "one at a time"] * 2
    assert all(float(cells[-5]) > 0 and float(cells[-4]) > 0 for cells in table)
    assert "transcripts that differ between the two servers: 0 of 2" in rows


def test_bench_serve_soak_sends_good_and_bad_uploads_and_reports_memory():
    summary, memory, *_ = run("--soak", "0.1", "--soak-clients", "2")
    assert summary.startswith("soak: 0.1 min, 2 clients:") and "; 0 answered wrongly" in summary
    good, bad = (int(summary.split(f" {kind}")[0].split()[-1]) for kind in ("good uploads", "bad;"))
    assert good > 0 and bad > 0
    assert memory.startswith("server RSS MB every 10 s: ") and float(memory.split()[-1]) > 100
