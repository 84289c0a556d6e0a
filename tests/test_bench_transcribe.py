"""scripts/bench_transcribe.py runs on tiny settings and prints its table (timings are never asserted)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_transcribe.py"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed: run scripts/install.sh")
def test_bench_transcribe_prints_rtf_and_peak_memory_for_fp32_and_int8():
    result = subprocess.run([sys.executable, str(SCRIPT), "--minutes", "0.1", "--no-eval", "--threads", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    header, rule, *rows = result.stdout.strip().splitlines()
    assert header.split() == ["audio", "runtime", "weights", "seconds", "CPU", "seconds", "RTF", "speed", "RSS",
                              "loaded", "MB", "peak", "RSS", "MB", "CER", "vs", "fp32", "words"]
    table = [row.split() for row in rows]
    assert [cells[2:4] for cells in table] == [["torch", "fp32"], ["torch", "int8"], ["onnxruntime", "fp32"],
                                              ["onnxruntime", "int8"]]
    for cells in table:
        seconds, cpu_seconds, rtf, peak_mb = float(cells[4]), float(cells[5]), float(cells[6]), float(cells[9])
        assert seconds > 0 and cpu_seconds > 0 and rtf > 0
        assert peak_mb > 50  # onnxruntime or torch, and the model, take more than 50 MB
        assert int(cells[11]) >= 8  # 6 s of speech was transcribed into words, not silence
        assert float(cells[10].rstrip("%")) < 15  # each stays close to torch fp32's transcript
    assert table[0][10] == "0.00%"  # torch fp32 is the reference
