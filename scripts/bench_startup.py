"""Start-up of `asr transcribe`: how long one call on a short file takes to print its transcript, and where the
time goes. A script that calls `asr transcribe` once per file pays this every time.

    python scripts/bench_startup.py [--runs 3]

Each command runs in a fresh process, --runs times, and the fastest wall time is kept, side by side:
`python -c "import torch"` (the floor any torch program pays), `asr transcribe hello.wav --decoder greedy`
(no LM) and `asr transcribe hello.wav` (the default: beam search with the shipped LM and its 55 k-word
lexicon). Then one process times the default's stages in turn: importing torch and asr, loading the model
bundle, building the decoder (the lexicon spelled in the model's tokens, the KenLM LM, flashlight's lexicon
trie), and transcribing. hello.wav is espeak-ng's "hello world this is a test" (about 2 s).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = """
import time
start = time.perf_counter()
def lap(name):
    global start
    now = time.perf_counter()
    print(f"{name}\\t{now - start:.3f}")
    start = now
import torch
lap("import torch")
import asr.inference.transcribe as T
from asr.core.bundle import load_bundle
from asr.core.paths import DEFAULT_MODEL
from asr.inference.torch_network import TorchNetwork
from asr.core.decoding import build_decoder, resolve_decoder
lap("import asr")
model, tokenizer = load_bundle(DEFAULT_MODEL)
lap("load the model bundle")
decoder = build_decoder(tokenizer, resolve_decoder(None, DEFAULT_MODEL))
lap("build the decoder (lexicon, LM, trie)")
recognizer = T.Recognizer(TorchNetwork(model, tokenizer), T.DecoderConfig("greedy"))
recognizer.decode = decoder
[result] = recognizer.transcribe(T.Path("hello.wav"))
lap("transcribe hello.wav")
"""


def fastest(command: list[str], runs: int, cwd: Path, env: dict) -> tuple[float, str]:
    """The fastest wall seconds of `runs` runs of `command`, and its stdout."""
    best, out = float("inf"), ""
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True)
        best, out = min(best, time.perf_counter() - start), result.stdout.strip()
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="runs of each command; the fastest counts (default: 3)")
    args = p.parse_args()
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(["espeak-ng", "-w", str(work / "hello.wav"), "hello world this is a test"], check=True)
        asr = [sys.executable, "-m", "asr", "transcribe", "hello.wav"]
        rows = [("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
                ("asr transcribe hello.wav --decoder greedy", [*asr, "--decoder", "greedy"]),
                ("asr transcribe hello.wav (beam search + LM)", asr)]
        print(f"fresh processes, fastest of {args.runs}, load average {os.getloadavg()[0]:.1f}")
        print(f"{'command':46s} {'seconds':>8s}  output")
        for name, command in rows:
            seconds, out = fastest(command, args.runs, work, env)
            print(f"{name:46s} {seconds:8.2f}  {out}")
        print("\nstages of the default, in one process")
        stages = subprocess.run([sys.executable, "-c", STAGES], cwd=work, env=env, capture_output=True, text=True,
                                check=True).stdout
        for line in stages.splitlines():
            name, seconds = line.split("\t")
            print(f"{name:46s} {float(seconds):8.2f}")


if __name__ == "__main__":
    main()
