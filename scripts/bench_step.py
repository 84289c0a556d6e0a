"""Training step time of the shipped model configs on this machine: forward + backward of one batch.

    python scripts/bench_step.py                   # small and ds2, batch of 8 x 10 s
    python scripts/bench_step.py --configs tiny --batch 4 --seconds 5 --steps 2
"""

import argparse
import time

import torch

from asr.audio import SAMPLE_RATE
from asr.model import DeepSpeech2, count_parameters
from asr.training import load_experiment_config


def step_seconds(model: DeepSpeech2, batch: int, seconds: float, steps: int) -> float:
    """Median wall time of forward + CTC loss + backward on random audio (B, S) with 20-token targets."""
    waves = torch.randn(batch, int(seconds * SAMPLE_RATE))
    lengths = torch.full((batch,), waves.shape[1])
    targets = torch.randint(1, model.cfg.vocab_size, (batch, 20))
    times = []
    for _ in range(steps + 1):  # the first step warms up and is not counted
        start = time.perf_counter()
        log_probs, out_lengths = model(waves, lengths)
        loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths,
                                            torch.full((batch,), 20))
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["small", "ds2"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x {args.seconds:g} s")
    print(f"{'config':8} {'parameters':>12} {'step (s)':>9} {'audio s / s':>12}")
    for name in args.configs:
        model = DeepSpeech2(load_experiment_config(name).model).train()
        seconds = step_seconds(model, args.batch, args.seconds, args.steps)
        print(f"{name:8} {count_parameters(model):>12,} {seconds:>9.2f} {args.batch * args.seconds / seconds:>12.1f}")


if __name__ == "__main__":
    main()
