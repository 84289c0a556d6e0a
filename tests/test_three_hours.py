"""A 3-hour recording is transcribed whole, in bounded memory, in a subprocess with a timeout."""

import json
import subprocess
import sys
from pathlib import Path

from test_bad_input import three_hour_wav

from asr.core.audio import SAMPLE_RATE

# Transcribes a 60 s file (the baseline: model loaded, streaming and chunking warmed up), then the
# 3-hour one, and prints the peak resident memory after each. The model is real but as small as the
# code allows, so the run costs seconds: what is tested is the reading, chunking and stitching.
RECOGNIZER = """
import json, resource, sys
import torch
torch.set_num_threads(1)
from asr.core.model import DeepSpeech2
from asr.core.text import CharTokenizer
from asr.training.config import load_experiment_config
from asr.inference.torch_network import TorchNetwork
from asr.inference.transcribe import Recognizer

cfg = load_experiment_config("tiny", ["model.conv_channels=[2,2]", "model.conv_kernels=[[5,5],[5,5]]",
                                      "model.conv_strides=[[2,2],[2,2]]", "model.rnn_layers=1", "model.rnn_hidden=8",
                                      "model.frontend.n_mels=16", "model.frontend.win_ms=40", "model.frontend.hop_ms=40"])
recognizer = Recognizer(TorchNetwork(DeepSpeech2(cfg.model).eval(), CharTokenizer()))
[minute] = recognizer.transcribe([sys.argv[1]], words=False)
"""
SCRIPT = RECOGNIZER + """
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB
baseline = peak()
[hours] = recognizer.transcribe([sys.argv[2]], words=False)
print(json.dumps({"durations": [minute.duration, hours.duration], "baseline_mb": baseline, "peak_mb": peak()}))
"""
# after the 60 s file, at most 256 MB more address space; then the recording on standard input
STDIN_SCRIPT = RECOGNIZER + """
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
[hour] = recognizer.transcribe([sys.stdin.buffer], words=False)
print(hour.duration)
"""


def test_a_three_hour_file_is_transcribed_in_bounded_memory(tmp_path):
    minute, hours = tmp_path / "minute.wav", tmp_path / "three-hours.wav"
    three_hour_wav(minute, 1 / 60)
    frames = three_hour_wav(hours, 3.0)
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(minute), str(hours)], capture_output=True,
                            text=True, timeout=300, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["durations"] == [60.0, frames / SAMPLE_RATE]
    # the whole file as float32 would be 691 MB: it must never be held, nor its chunks kept
    assert report["peak_mb"] - report["baseline_mb"] < 150, report


def test_an_hour_through_a_pipe_is_transcribed_in_bounded_memory(tmp_path):
    minute, hour = tmp_path / "minute.wav", tmp_path / "hour.wav"
    three_hour_wav(minute, 1 / 60)
    frames = three_hour_wav(hour, 1.0)
    cat = subprocess.Popen(["cat", str(hour)], stdout=subprocess.PIPE)
    result = subprocess.run([sys.executable, "-c", STDIN_SCRIPT, str(minute)], stdin=cat.stdout, capture_output=True,
                            text=True, timeout=300, cwd=Path(__file__).parent.parent)
    cat.stdout.close()
    cat.wait()
    # read whole, its bytes (115 MB) and float32 samples (230 MB, and their mean) would pass the cap
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout) == frames / SAMPLE_RATE
