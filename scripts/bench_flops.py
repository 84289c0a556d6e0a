"""The hardware limit: FLOPs per second of audio of each config, the machine's measured matmul rate, and the
fraction of it that inference and training reach; then a profile of one training step, by kind of work.

    python scripts/bench_flops.py                  # tiny, small and ds2; profile of small (about 2-4 min)
    python scripts/bench_flops.py --configs tiny --seconds 2 --batch 2 --profile tiny   # a quick check

FLOPs: torch.utils.flop_counter.FlopCounterMode counts the convolutions, the front-end's matmuls and the
linear head of one forward pass; it does not see inside nn.LSTM, whose matmuls are counted from their
shapes: 2 x 4H x (I + H) per step, direction and layer (gates' elementwise work left out). Training is
counted as 3x the forward pass (the backward pass computes two products for every one of the forward's).
The peak is the best rate of (N x N) @ (N x N) float32 matmuls (2 N^3 FLOPs each), over a few N (it grows
with N here: 133 GFLOP/s at N = 1024, 144 at 4096, 174 at 6144 on 2 threads), on the same threads.
Measured times: the model on `--batch` utterances of `--seconds` each, all of one length (no padding),
the best of `--repeats` after a warm-up (the run least disturbed by other work on a shared machine):
inference is a forward pass under torch.inference_mode, training is forward, CTC loss, backward and an
AdamW step. The profile groups torch.profiler's self CPU time by operator kind.
"""

import argparse
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from bench_transcribe import print_table
from torch.utils.flop_counter import FlopCounterMode

from asr.core.audio import SAMPLE_RATE
from asr.core.model import DeepSpeech2, count_parameters, output_lengths
from asr.training.config import load_experiment_config

# profiler operator names -> kind of work, first match wins (self CPU time)
KINDS = [("LSTM recurrence", ("rnn", "lstm")), ("convolution", ("conv",)), ("CTC loss", ("ctc",)),
         ("front-end (STFT, mel)", ("stft", "fft")), ("matmul (head, front-end)", ("mm", "linear", "matmul")),
         ("optimizer", ("adam", "foreach", "lerp", "addcdiv", "sqrt")), ("normalisation", ("norm",)),
         ("copies, padding, reversal", ("copy", "gather", "cat", "pad", "clone", "contiguous", "where", "scatter",
                                         "index", "fill", "zero", "empty", "stack", "flip"))]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["tiny", "small", "ds2"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each utterance (default: 10)")
    p.add_argument("--batch", type=int, default=4, help="utterances in a training batch (default: 4)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each, the best kept (default: 3)")
    p.add_argument("--matmul-sizes", type=int, nargs="+", default=[2048, 4096, 6144],
                   help="N of the N x N matmuls whose best rate is the peak (default: 2048 4096 6144)")
    p.add_argument("--profile", default="small", help="config whose training step is profiled (default: small)")
    return p.parse_args()


def lstm_flops(model: DeepSpeech2, steps: int) -> int:
    """Multiply-add FLOPs of every LSTM's matmuls over `steps` output steps of one utterance."""
    total = 0
    for lstm in (m for m in model.rnns.modules() if isinstance(m, torch.nn.LSTM)):  # one or two directions a layer
        total += 2 * 4 * lstm.hidden_size * (lstm.input_size + lstm.hidden_size) * steps
    return total


def forward_flops(model: DeepSpeech2, seconds: float) -> dict[str, float]:
    """FLOPs per second of audio of one forward pass, by part: front-end, conv, LSTM, head."""
    samples = int(seconds * SAMPLE_RATE)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.randn(1, samples), torch.tensor([samples]))
    by_module = counter.get_flop_counts()
    part = {name: sum(by_module.get(f"DeepSpeech2.{name}", {}).values()) for name in ("frontend", "head")}
    part["convs"] = sum(sum(by_module.get(f"DeepSpeech2.convs.{i}", {}).values()) for i in range(len(model.convs)))
    steps = int(output_lengths(model.cfg, torch.tensor([samples]))[0])
    part["rnns"] = lstm_flops(model, steps)
    return {name: flops / seconds for name, flops in part.items()}


def matmul_rate(n: int, repeats: int) -> float:
    """Best float32 FLOP/s of an (n x n) @ (n x n) product on torch's current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def batch(model: DeepSpeech2, size: int, seconds: float):
    """Random audio (B, S), lengths (B,) and 20-token targets (B, 20)."""
    samples = int(seconds * SAMPLE_RATE)
    return (torch.randn(size, samples), torch.full((size,), samples),
            torch.randint(1, model.cfg.vocab_size, (size, 20)))


def train_step(model: DeepSpeech2, optimizer, waves, lengths, targets) -> None:
    """Forward (B, S) -> CTC loss -> backward -> AdamW step."""
    log_probs, out_lengths = model(waves, lengths)
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, torch.full_like(lengths, targets.shape[1]))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def best_seconds(fn, repeats: int) -> float:
    """The shortest of `repeats` runs after a warm-up: the one least disturbed by other work."""
    fn()
    return min(timed(fn) for _ in range(repeats))


def measure(name: str, args, peak: float) -> list[list[str]]:
    """Rows for one config: inference at batch 1 and `--batch`, training at `--batch`."""
    model = DeepSpeech2(load_experiment_config(name).model)
    flops = forward_flops(model, args.seconds)
    forward = sum(flops.values())
    rows = []
    for size in (1, args.batch):
        waves, lengths, _ = batch(model, size, args.seconds)
        with torch.inference_mode():
            seconds = best_seconds(lambda: model.eval()(waves, lengths), args.repeats)
        rows.append(row(name, model, flops, f"inference, batch {size}", forward, size * args.seconds / seconds, peak))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters())
    waves, lengths, targets = batch(model, args.batch, args.seconds)
    seconds = best_seconds(lambda: train_step(model, optimizer, waves, lengths, targets), args.repeats)
    rows.append(row(name, model, flops, f"training, batch {args.batch}", 3 * forward,
                    args.batch * args.seconds / seconds, peak))
    return rows


def row(name, model, flops, task, per_second, throughput, peak) -> list[str]:
    share = {k: f"{100 * v / sum(flops.values()):.0f}%" for k, v in flops.items()}
    return [name, f"{count_parameters(model) / 1e6:.1f}M", f"{sum(flops.values()) / 1e9:.2f}", share["convs"],
            share["rnns"], task, f"{per_second / 1e9:.2f}", f"{throughput:.1f}",
            f"{per_second * throughput / 1e9:.1f}", f"{100 * per_second * throughput / peak:.1f}%"]


def profile(name: str, args) -> list[list[str]]:
    """Self CPU time of one training step of `name` by kind of work."""
    model = DeepSpeech2(load_experiment_config(name).model).train()
    optimizer = torch.optim.AdamW(model.parameters())
    waves, lengths, targets = batch(model, args.batch, args.seconds)
    train_step(model, optimizer, waves, lengths, targets)  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train_step(model, optimizer, waves, lengths, targets)
    kinds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        op = event.key.lower()
        kind = next((k for k, words in KINDS if any(w in op for w in words)), "other")
        kinds[kind] += event.self_cpu_time_total / 1e6
    total = sum(kinds.values())
    return [[kind, f"{seconds:.2f}", f"{100 * seconds / total:.0f}%"]
            for kind, seconds in sorted(kinds.items(), key=lambda kv: -kv[1])] + [["total", f"{total:.2f}", "100%"]]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    peak, size = max((matmul_rate(n, args.repeats), n) for n in args.matmul_sizes)
    print(f"peak: {peak / 1e9:.1f} GFLOP/s, float32 {size}x{size} matmul (best of {args.matmul_sizes}) on "
          f"{args.threads} threads (torch {torch.__version__}); utterances of {args.seconds:g} s")
    print()
    rows = [r for name in args.configs for r in measure(name, args, peak)]
    print_table(["config", "params", "fwd GFLOP / audio s", "conv", "LSTM", "task", "GFLOP / audio s",
                 "audio s / s", "GFLOP/s", "of peak"], rows)
    if args.profile:
        print()
        print(f"profile: one training step of {args.profile}, batch {args.batch} x {args.seconds:g} s, "
              "self CPU time by kind")
        print_table(["kind", "seconds", "share"], profile(args.profile, args))


if __name__ == "__main__":
    main()
