"""scripts/bench_transcribe.py runs on tiny settings and prints its table (timings are never asserted)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_transcribe.py"


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed: run scripts/install.sh")
def test_bench_transcribe_prints_rtf_and_peak_memory_for_fp32_and_int8():
    result = subprocess.run([sys.executable, str(SCRIPT), "--minutes", "0.1", "--no-eval", "--threads", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    header, rule, *rows = result.stdout.strip().splitlines()
    assert header.split() == ["audio", "weights", "seconds", "CPU", "seconds", "RTF", "speed", "RSS", "loaded", "MB",
                              "peak", "RSS", "MB", "CER", "vs", "fp32", "words"]
    assert [row.split()[:3] for row in rows] == [["0.1", "min", "fp32"], ["0.1", "min", "int8"]]
    for row in rows:
        cells = row.split()
        seconds, cpu_seconds, rtf, peak_mb = float(cells[3]), float(cells[4]), float(cells[5]), float(cells[8])
        assert seconds > 0 and cpu_seconds > 0 and rtf > 0
        assert peak_mb > 100  # torch and the model alone take more than 100 MB
        assert int(cells[10]) >= 8  # 6 s of speech was transcribed into words, not silence
    assert rows[0].split()[9] == "0.00%"  # fp32 is its own reference
    assert float(rows[1].split()[9].rstrip("%")) < 15  # int8 stays close to fp32
