"""Shared fixtures: a tiny corpus of real synthetic speech in LibriSpeech's layout."""

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.core.audio import SAMPLE_RATE, load_audio, write_audio

torch.set_num_threads(1)

SENTENCES = [
    "HELLO WORLD", "GOOD MORNING", "THE CAT SAT", "OPEN THE DOOR", "A BIG RED DOG",
    "SHE READS BOOKS", "WE LIKE TEA", "TURN LEFT NOW", "HE IS HAPPY", "THE SUN IS HOT",
    "BLUE SKY", "PLAY MUSIC", "CALL MY MOTHER", "IT IS COLD", "FISH CAN SWIM",
    "STOP THE CAR", "READ IT AGAIN", "TWO GREEN FROGS", "YES OR NO", "WHERE IS IT",
]
SPEAKER, CHAPTER = 19, 198


def speak(text: str, path: Path, voice: str = "en-us") -> None:
    """espeak-ng says `text` into a 16 kHz FLAC at `path`."""
    wav = path.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text.lower()], check=True, capture_output=True)
    write_audio(path, load_audio(wav))
    wav.unlink()


@pytest.fixture(scope="session")
def librispeech_tree(tmp_path_factory) -> Path:
    """ROOT/train-tiny/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac + SPEAKER-CHAPTER.trans.txt"""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install.sh")
    root = tmp_path_factory.mktemp("LibriSpeech")
    chapter = root / "train-tiny" / str(SPEAKER) / str(CHAPTER)
    chapter.mkdir(parents=True)
    lines = []
    for i, text in enumerate(SENTENCES):
        utt = f"{SPEAKER}-{CHAPTER}-{i:04d}"
        speak(text, chapter / f"{utt}.flac")
        lines.append(f"{utt} {text}\n")
    (chapter / f"{SPEAKER}-{CHAPTER}.trans.txt").write_text("".join(lines))
    return root


def tone(freq=440.0, seconds=0.5, rate=SAMPLE_RATE) -> np.ndarray:
    """A sine tone (S,) at amplitude 0.5."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def non_finite(value):
    """A writer of a float WAV of a tone with one sample set to `value` (NaN, inf)."""
    def write(path):
        samples = tone()
        samples[100] = value
        sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")

    return write


@pytest.fixture(autouse=True)
def asr_logger_restored():
    """asr.cli.main, when a test calls it in-process, sets up the "asr" logger for a terminal (its own
    handler, no propagation, which would hide later tests' records from caplog): undo that after each test."""
    logger = logging.getLogger("asr")
    state = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = state


# runs `asr` and, at exit, prints its own peak RSS (VmHWM: of this program's memory since exec; getrusage's
# ru_maxrss would also count the pytest process it was forked from)
PEAK_PROBE = ("import atexit, runpy, sys; atexit.register(lambda: print('VmHWM', open('/proc/self/status').read()"
              ".split('VmHWM:')[1].split()[0], file=sys.stderr)); sys.argv[0] = 'asr'; "
              "runpy.run_module('asr', run_name='__main__')")


def run_asr_peak_mb(*args) -> tuple[subprocess.CompletedProcess, float]:
    """Run `asr` in a subprocess like run_asr, with that process's own peak RSS in MB."""
    result = subprocess.run([sys.executable, "-c", PEAK_PROBE, *map(str, args)], capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"asr {' '.join(map(str, args))} exited {result.returncode}\n{result.stderr[-3000:]}")
    peak_kb = int(result.stderr.rsplit("VmHWM", 1)[1].split()[0])
    return result, peak_kb / 1024


def run_asr(*args, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `asr` command line in a subprocess."""
    result = subprocess.run([sys.executable, "-m", "asr", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"asr {' '.join(map(str, args))} exited {result.returncode}\n{result.stderr[-3000:]}")
    return result


def streaming_model(lookahead: int = 1, seed: int = 0):
    """A tiny streaming DeepSpeech2 (the shipped streaming model's layout, one small LSTM) with random weights,
    every part of it non-trivial: front-end statistics, batch-norm statistics, lookahead taps."""
    from asr.core.model import DeepSpeech2
    from asr.core.model_config import FrontendConfig, ModelConfig

    torch.manual_seed(seed)
    cfg = ModelConfig(frontend=FrontendConfig(kind="log_mel", normalize="global"), conv_channels=[4, 4],
                      conv_kernels=[[41, 11], [11, 7]], conv_strides=[[2, 3], [2, 1]], rnn_layers=2, rnn_hidden=16,
                      rnn_bidirectional=False, lookahead=lookahead)
    model = DeepSpeech2(cfg).eval()
    with torch.no_grad():
        model.frontend.feature_mean.normal_(-5, 1)
        model.frontend.feature_std.uniform_(1, 3)
        for conv in model.convs:
            conv.norm.running_mean.normal_()
        model.lookahead.conv.weight.normal_()
    return model


@pytest.fixture(scope="session")
def streaming_onnx(tmp_path_factory) -> Path:
    """streaming_model() exported as ONNX (stream.onnx, with stream.stream.onnx and stream.onnx.json beside it)."""
    from asr.core.text import CharTokenizer
    from asr.inference.export import export

    return export(streaming_model(), CharTokenizer(), tmp_path_factory.mktemp("streaming") / "stream.onnx", "onnx")
