"""Transcription speed and memory on this CPU: real-time factor (processing seconds / audio seconds) and peak
memory (RSS) of the default model, greedy decoding, for 1 and 60 minutes of speech, float32 against int8
(dynamic quantization of the LSTM and linear layers, `asr transcribe --quantize int8`).

    python scripts/bench_transcribe.py                      # 1 and 60 minutes, fp32 and int8 (about 3-5 min)
    python scripts/bench_transcribe.py --minutes 0.2 --no-eval   # a quick check

The audio is espeak-ng speech of a dozen sentences, concatenated with short pauses until it is long enough,
written once as a 16 kHz WAV. Each configuration runs in a fresh Python process (so peaks do not mix) that
loads the model and transcribes the file with asr's Python API, the code behind `asr transcribe`: the model
as asr runs it (torch), and its ONNX export (`asr export --format onnx [--quantize int8]`) in onnxruntime
in the same Recognizer (asr.inference.network.OnnxNetwork), so that both read and chunk the audio alike. The time
covers reading, features, network and decoding, not the model load; "CPU seconds" is the process's CPU
time over the same span, which other work on a shared machine disturbs less than the wall time. Peak RSS
is the process's VmHWM: Python, torch and the model included. "CER vs fp32" compares each transcript with
torch's float32 one.

With a manifest (default data/synthetic/test.jsonl, when it is there) it also scores fp32 and int8 on it
(`asr evaluate MANIFEST --decoder greedy [--quantize int8]`) for the WER/CER change int8 brings.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "the birch canoe slid on the smooth planks", "glue the sheet to the dark blue background",
    "it is easy to tell the depth of a well", "these days a chicken leg is a rare dish",
    "rice is often served in round bowls", "the juice of lemons makes fine punch",
    "the box was thrown beside the parked truck", "the hogs were fed chopped corn and garbage",
    "four hours of steady work faced us", "a large size in stockings is hard to sell",
    "the boy was there when the sun rose", "a rod is used to catch pink salmon",
]
PAUSE_SECONDS = 0.4


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 60], help="audio lengths (default: 1 60)")
    p.add_argument("--quantize", nargs="+", default=["none", "int8"], choices=["none", "int8"])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default: 1; 2 threads on a 2-core machine that is running anything else "
                        "was measured 36x slower, the threads waiting on each other)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--manifest", type=Path, default=ROOT / "data" / "synthetic" / "test.jsonl",
                   help="score fp32 and int8 on it when it exists (default: data/synthetic/test.jsonl)")
    p.add_argument("--no-eval", action="store_true", help="skip the manifest")
    p.add_argument("--work", type=Path, help="folder for the audio (default: a temporary one)")
    p.add_argument("--runtime", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"],
                   help="torch: the model as asr runs it; onnx: its ONNX export in onnxruntime (default: both)")
    p.add_argument("--worker", nargs=2, metavar=("AUDIO", "MODEL"), help=argparse.SUPPRESS)
    return p.parse_args()


def speech_pool() -> list[np.ndarray]:
    """espeak-ng's 16 kHz float32 waveform (S,) of each sentence, a pause appended."""
    from asr.core.audio import load_audio

    if not shutil.which("espeak-ng"):
        sys.exit("bench_transcribe: espeak-ng is not installed (scripts/install.sh)")
    pool = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
            pool.append(np.concatenate([load_audio(wav), np.zeros(int(16000 * PAUSE_SECONDS), np.float32)]))
    return pool


def write_long_audio(path: Path, minutes: float, pool: list[np.ndarray]) -> float:
    """Concatenate the pool's sentences in turn into a 16 kHz WAV of `minutes`, a sentence at a time (the
    whole hour is never in memory); returns its seconds."""
    total, target, i = 0, int(minutes * 60 * 16000), 0
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        while total < target:
            piece = pool[i % len(pool)][:target - total]
            f.write(piece)
            total, i = total + len(piece), i + 1
    return total / 16000


def worker(audio: str, model: str, threads: int, batch_size: int) -> None:
    """In a fresh process: load `model` ("torch", "torch-int8" or an ONNX export), transcribe `audio`, print
    time, peak RSS and the text."""
    from asr.core.decoding import DecoderConfig
    from asr.core.paths import DEFAULT_MODEL
    from asr.inference.transcribe import load_model

    if model.endswith(".onnx"):
        recognizer = load_model(model, None, DecoderConfig("greedy"), None, threads)
    else:
        quantize = "int8" if model == "torch-int8" else None
        recognizer = load_model(DEFAULT_MODEL, "cpu", DecoderConfig("greedy"), quantize, threads)
    loaded_mb = peak_rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    [result] = recognizer.transcribe([audio], batch_size, words=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "duration": result.duration,
                      "loaded_mb": loaded_mb, "peak_mb": peak_rss_mb(), "text": result.text}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    exec from the parent, which has loaded a model to export it."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024  # kB


def run_worker(audio: Path, model: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", str(audio), model, "--threads", str(args.threads),
               "--batch-size", str(args.batch_size)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        sys.exit(f"bench_transcribe: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def models(args, folder: Path) -> list[tuple[str, str, str]]:
    """(runtime, weights, worker's MODEL) of each configuration; ONNX exports of the default model are
    written to `folder`."""
    from asr.core.bundle import load_bundle
    from asr.core.paths import DEFAULT_MODEL
    from asr.inference.export import export

    configs = []
    for runtime in args.runtime:
        for quantize in args.quantize:
            weights = "fp32" if quantize == "none" else quantize
            model = "torch" if quantize == "none" else "torch-int8"
            if runtime == "onnx":
                model = str(export(*load_bundle(DEFAULT_MODEL), folder / f"default-{weights}.onnx", "onnx",
                                   None if quantize == "none" else quantize))
            configs.append(("onnxruntime" if runtime == "onnx" else "torch", weights, model))
    return configs


def measure(audio: Path, duration: float, configs: list[tuple[str, str, str]], args) -> list[list[str]]:
    """One table row per configuration for `audio` of `duration` seconds; the first one is the reference."""
    rows, reference = [], None
    for runtime, weights, model in configs:
        print(f"{duration / 60:g} min, {runtime} {weights}...", file=sys.stderr, flush=True)
        r = run_worker(audio, model, args)
        reference = r["text"] if reference is None else reference
        rows.append([f"{duration / 60:g} min", runtime, weights, f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.2f}",
                     f"{r['seconds'] / duration:.4f}", f"{duration / r['seconds']:.0f}x", f"{r['loaded_mb']:.0f}",
                     f"{r['peak_mb']:.0f}", f"{100 * jiwer.cer(reference, r['text']):.2f}%",
                     str(len(r["text"].split()))])
    return rows


def evaluate(manifest: Path, quantize: str, threads: int) -> dict:
    """`asr evaluate MANIFEST --decoder greedy` (with --quantize int8) in a fresh process -> its JSON line."""
    command = [sys.executable, "-m", "asr", "evaluate", str(manifest), "--decoder", "greedy", "--device", "cpu",
               "--format", "json", *(["--quantize", quantize] if quantize != "none" else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    if result.returncode not in (0, 1):  # 1: some utterances could not be read, still scored
        sys.exit(f"bench_transcribe: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.worker:
        return worker(*args.worker, args.threads, args.batch_size)
    import torch

    pool = speech_pool()
    print(f"CPU: {os.cpu_count()} cores, {args.threads} torch threads, torch {torch.__version__}; default model, "
          f"greedy decoding, batch {args.batch_size}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.work or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        configs = models(args, folder)
        for minutes in args.minutes:
            audio = folder / f"speech-{minutes:g}min.wav"
            duration = write_long_audio(audio, minutes, pool)
            rows += measure(audio, duration, configs, args)
    print_table(["audio", "runtime", "weights", "seconds", "CPU seconds", "RTF", "speed", "RSS loaded MB",
                 "peak RSS MB", "CER vs fp32", "words"], rows)
    if args.manifest.exists() and not args.no_eval:
        scores = [[q if q != "none" else "fp32", *(f"{100 * s[k]:.2f}%" for k in ("wer", "cer")), str(s["utterances"])]
                  for q in args.quantize for s in [evaluate(args.manifest, q, args.threads)]]
        print()
        print(f"{args.manifest}, greedy")
        print_table(["weights", "WER", "CER", "utterances"], scores)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))


if __name__ == "__main__":
    main()
