"""Training step time of the shipped model configs on this machine, float32 beside bf16 autocast (what
trainer.precision=bf16-mixed runs): forward + CTC loss + backward of one batch.

    python scripts/bench_step.py                   # small and ds2, batch of 8 x 10 s
    python scripts/bench_step.py --configs recipes/synthetic/synthetic.yaml   # a config file
    python scripts/bench_step.py --configs tiny --batch 4 --seconds 5 --steps 2
"""

import argparse
import time
from pathlib import Path

import torch
from bench_transcribe import print_table

from asr.core.audio import SAMPLE_RATE
from asr.core.model import DeepSpeech2, count_parameters
from asr.training.config import load_experiment_config

PRECISIONS = {"float32": torch.float32, "bf16": torch.bfloat16}


def step_seconds(model: DeepSpeech2, batch: int, seconds: float, steps: int, dtype: torch.dtype) -> float:
    """Median wall time of forward + CTC loss + backward on random audio (B, S) with 20-token targets, under
    autocast to `dtype` (none for float32). The loss is float32 either way, as in training."""
    waves = torch.randn(batch, int(seconds * SAMPLE_RATE))
    lengths = torch.full((batch,), waves.shape[1])
    targets = torch.randint(1, model.cfg.vocab_size, (batch, 20))
    times = []
    for _ in range(steps + 1):  # the first step warms up and is not counted
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            log_probs, out_lengths = model(waves, lengths)  # (B, T, V) float32
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
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x {args.seconds:g} s, "
          f"native bf16 on this CPU: {'yes' if native else 'no'}")
    rows = []
    for name in args.configs:
        model = DeepSpeech2(load_experiment_config(name).model).train()
        reference = None
        for precision, dtype in PRECISIONS.items():
            seconds = step_seconds(model, args.batch, args.seconds, args.steps, dtype)
            reference = reference or seconds
            rows.append([Path(name).stem, f"{count_parameters(model):,}", precision, f"{seconds:.3f}",
                         f"{args.batch * args.seconds / seconds:.1f}", f"{reference / seconds:.2f}"])
    print_table(["config", "parameters", "precision", "step (s)", "audio s / s", "x float32"], rows)


if __name__ == "__main__":
    main()
