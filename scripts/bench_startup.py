"""Start-up of `asr`: how long one call takes to answer, on the light runtime (the shipped model's ONNX export in
onnxruntime, no torch) beside the torch runtime (the same model's bundle, `--model default.safetensors`). A
script that calls `asr transcribe` once per file pays this every time.

    python scripts/bench_startup.py [--runs 3]

Each command runs in a fresh process, --runs times, and the fastest wall time is kept, side by side:
`asr --help`, `asr transcribe hello.wav` (the default decoder: beam search with the shipped LM and its 55 k-word
lexicon), the same with `--decoder greedy` (no LM), and `asr transcribe missing.wav` (an error before any model
loads); `python -c "import torch"` is the floor any torch program pays. Then one process times the default's
stages in turn: importing asr, loading the ONNX model, building the decoder (the lexicon spelled in the model's
tokens, the KenLM LM, flashlight's lexicon trie), and transcribing. hello.wav is espeak-ng's "hello world this
is a test" (about 2 s). Decoding speed over long audio (RTF): scripts/bench_transcribe.py.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "asr" / "assets" / "default.safetensors"
STAGES = """
import time
start = time.perf_counter()
def lap(name):
    global start
    now = time.perf_counter()
    print(f"{name}\\t{now - start:.3f}")
    start = now
from asr.core.decoding import build_decoder, resolve_decoder
from asr.core.paths import DEFAULT_ONNX
from asr.inference.network import OnnxNetwork
from asr.inference.transcribe import DecoderConfig, Recognizer
lap("import asr")
network = OnnxNetwork(DEFAULT_ONNX)
lap("load the ONNX model")
decoder = build_decoder(network.tokenizer, resolve_decoder(None, DEFAULT_ONNX))
lap("build the decoder (lexicon, LM, trie)")
recognizer = Recognizer(network, DecoderConfig("greedy"))
recognizer.decode = decoder
[result] = recognizer.transcribe("hello.wav")
lap("transcribe hello.wav")
"""


def fastest(command: list[str], runs: int, cwd: Path, env: dict) -> tuple[float, str]:
    """The fastest wall seconds of `runs` runs of `command`, and the first line of its output."""
    best, out = float("inf"), ""
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        best = min(best, time.perf_counter() - start)
        out = next(iter((result.stdout.strip() or result.stderr.strip()).splitlines()), "")[:60]
    return best, out


def rows(python: str) -> list[tuple[str, list[str], list[str] | None]]:
    """(name, command on the light runtime, the torch runtime's command or None)."""
    asr = [python, "-m", "asr"]
    torch = ["--model", str(BUNDLE), "--device", "cpu"]
    return [("python -c 'import torch'", None, [python, "-c", "import torch"]),
            ("asr --help", [*asr, "--help"], None),
            ("asr transcribe missing.wav", [*asr, "transcribe", "missing.wav"], None),
            ("asr transcribe hello.wav", [*asr, "transcribe", "hello.wav"], [*asr, "transcribe", "hello.wav", *torch]),
            ("asr transcribe hello.wav --decoder greedy", [*asr, "transcribe", "hello.wav", "--decoder", "greedy"],
             [*asr, "transcribe", "hello.wav", "--decoder", "greedy", *torch])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="runs of each command; the fastest counts (default: 3)")
    args = p.parse_args()
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(["espeak-ng", "-w", str(work / "hello.wav"), "hello world this is a test"], check=True)
        print(f"fresh processes, fastest of {args.runs}, load average {os.getloadavg()[0]:.1f}")
        print(f"{'command':42s} {'onnx':>6s} {'torch':>6s}  output")
        for name, light, heavy in rows(sys.executable):
            timed = [fastest(command, args.runs, work, env) if command else (None, "") for command in (light, heavy)]
            cells = " ".join(f"{seconds:6.2f}" if seconds is not None else f"{'-':>6s}" for seconds, _ in timed)
            print(f"{name:42s} {cells}  {timed[0][1] or timed[1][1]}")
        print("\nstages of the default, in one process")
        stages = subprocess.run([sys.executable, "-c", STAGES], cwd=work, env=env, capture_output=True, text=True,
                                check=True).stdout
        for line in stages.splitlines():
            name, seconds = line.split("\t")
            print(f"{name:42s} {float(seconds):6.2f}")


if __name__ == "__main__":
    main()
