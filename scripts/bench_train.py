"""Training throughput against a typical DeepSpeech2 port: seconds of audio trained on per second (forward,
CTC loss, backward, gradient clipping, optimizer step, data loading included), ours vs the baseline in
scripts/baseline_ds2.py, same network sizes, same utterances, one table.

    python scripts/bench_train.py            # small (batch 8) and ds2 (batch 2), 1 thread, about 6-10 min
    python scripts/bench_train.py --configs tiny --batch-sizes 2 --steps 1 --utterances 8 --max-duration 4

Ours is what `asr train` runs: asr's LightningModule (loss, per-layer gradient norms, logging) and
DataModule (DataLoader workers only decode audio; DurationBatchSampler's duration buckets, here without
SortaGrad's sorted first epoch) under Lightning's Trainer with the config's trainer settings, features on the
model's device, the exact padded bidirectional LSTM. The baseline computes features per utterance in the
workers, draws random batches of a fixed size padded to their longest utterance, and wraps one bidirectional
nn.LSTM per layer in pack_padded_sequence. Ours gets batches of at most batch x mean duration padded
seconds (max_batch_seconds), so both take about the same audio per step.

Data: random-noise FLAC files with durations drawn like LibriSpeech's training utterances (about 12 s on
average, 2-20 s here) and random character transcripts of 14 characters a second. Each (config, system)
runs in a fresh process: ours `--warmup` steps, then `--steps` timed ones; the baseline's steps are all
timed (its first step costs what the others do, and a warm-up step would cost it minutes: Lightning's first
step does one-off work that the plain loop does not). "CPU s" is the main process's CPU time over the timed
steps (the workers' is not in it). "padding" is the share of the padded frames that
hold no audio. ds2 (87 M parameters) keeps a batch of 2 so that the baseline's packed LSTM finishes in time.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_infer import run_worker
from bench_transcribe import print_table

DEFAULT_BATCH = {"tiny": 4, "small": 8, "ds2": 2}
CHARS_PER_SECOND = 14


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["small", "ds2"])
    p.add_argument("--batch-sizes", type=int, nargs="+",
                   help="utterances per baseline batch (default: small 8, ds2 2); several give a plot's points")
    p.add_argument("--steps", type=int, default=2, help="timed optimizer steps (default: 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before them, ours only (default: 1)")
    p.add_argument("--utterances", type=int, default=96)
    p.add_argument("--max-duration", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of both (default: 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default: 1; on a 2-core machine that runs anything else, 2 threads wait "
                        "on each other, and the baseline's many small steps the most)")
    p.add_argument("--plot", type=Path, help="also draw throughput against batch size into this PNG")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def write_data(folder: Path, n: int, max_duration: float, seed: int = 0) -> Path:
    """n random-noise FLAC files, durations ~ LibriSpeech's (normal, mean 12.3 s, sd 3.8 s, within
    [2, max_duration]), random A-Z transcripts -> a manifest."""
    import soundfile as sf

    from asr.core.manifest import Utterance, write_manifest

    rng = np.random.default_rng(seed)
    durations = np.clip(rng.normal(12.3, 3.8, n), 2.0, max_duration)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ "))
    rows = []
    for i, duration in enumerate(durations):
        samples = int(duration * 16000)
        path = folder / f"{i:04d}.flac"
        sf.write(path, (0.05 * rng.standard_normal(samples)).astype(np.float32), 16000)
        text = " ".join("".join(rng.choice(letters, int(duration * CHARS_PER_SECOND))).split())
        rows.append(Utterance(path.absolute(), samples / 16000, text))
    write_manifest(folder / "train.jsonl", rows)
    return folder / "train.jsonl"


def ours(manifest: Path, name: str, batch_size: int, steps: int, warmup: int, workers: int, folder: Path) -> dict:
    """`asr train`'s module and data under Lightning's Trainer for warmup + steps steps -> timings."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from asr.core import config
    from asr.core.manifest import read_manifest
    from asr.core.text import build_tokenizer
    from asr.training.config import load_experiment_config
    from asr.training.datamodule import SpeechDataModule
    from asr.training.module import ASRModule

    cfg = load_experiment_config(name)
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    mean = float(np.mean([u.duration for u in read_manifest(manifest)]))
    cfg.data.train_manifests, cfg.data.num_workers, cfg.data.sorta_grad = [str(manifest)], workers, False
    cfg.data.max_batch_seconds, cfg.data.max_duration = batch_size * mean, 30.0
    cfg.data.speed_perturb = []  # the baseline's utterances as they are (ds2's config perturbs speed)
    class StepTimer(L.Callback):
        """Wall and CPU seconds, audio and padded seconds of the steps after `warmup`."""

        audio = padded = 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == warmup:
                self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx >= warmup:
                self.audio += batch.wave_lengths.sum().item() / 16000
                self.padded += batch.waves.numel() / 16000
                self.seconds = time.perf_counter() - self.start
                self.cpu_seconds = time.process_time() - self.cpu_start

    timer = StepTimer()
    settings = {**cfg.trainer, "accelerator": "cpu", "devices": 1, "max_steps": warmup + steps, "max_epochs": -1}
    trainer = L.Trainer(**settings, logger=CSVLogger(folder), callbacks=[timer], limit_val_batches=0,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False)
    module = ASRModule(config.to_dict(cfg), tokenizer.to_dict())
    trainer.fit(module, datamodule=SpeechDataModule(cfg.data, tokenizer, cfg.model, seed=cfg.seed))
    return {"seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds, "audio_seconds": timer.audio,
            "padded_seconds": timer.padded, "steps": trainer.global_step - warmup,
            "parameters": sum(p.numel() for p in module.model.parameters())}


def baseline(manifest: Path, name: str, batch_size: int, steps: int, warmup: int, workers: int) -> dict:
    """scripts/baseline_ds2.py's loop on the same utterances and network size -> timings."""
    from baseline_ds2 import baseline_model, train_steps

    from asr.core.manifest import read_manifest
    from asr.core.text import build_tokenizer
    from asr.training.config import load_experiment_config

    cfg = load_experiment_config(name)
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    result = train_steps(read_manifest(manifest), tokenizer, cfg.model, batch_size, steps, warmup, workers,
                         cfg.optim.lr, cfg.trainer.get("gradient_clip_val", 5.0))
    return {**result, "parameters": sum(p.numel() for p in baseline_model(cfg.model).parameters())}


def worker(spec: Path) -> None:
    import torch

    job = json.loads(spec.read_text())
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    args = (Path(job["manifest"]), job["config"], job["batch"], job["steps"], job["warmup"], job["workers"])
    result = ours(*args, spec.parent) if job["system"] == "ours" else baseline(*args)
    print(json.dumps(result))


def plot(rows: list[dict], out: Path) -> None:
    """Audio seconds per second against batch size, ours and the baseline, one panel per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["config"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for system in ("ours", "baseline"):
            points = [(r["batch"], r["throughput"]) for r in rows if (r["config"], r["system"]) == (name, system)]
            ax.plot(*zip(*points), marker="o", label=system)
        ax.set(xlabel="batch size (utterances; ours: the same audio seconds)", ylabel="audio seconds / second",
               title=f"training throughput, {name}")
        ax.set_xticks(sorted({r["batch"] for r in rows if r["config"] == name}))
        ax.legend()
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    args = parse_args()
    if args.worker:
        return worker(args.worker)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_data(Path(tmp), args.utterances, args.max_duration)
        for name in args.configs:
            for batch in args.batch_sizes or [DEFAULT_BATCH.get(name, 8)]:
                for system in ("ours", "baseline"):
                    print(f"{name}, batch {batch}, {system}...", file=sys.stderr, flush=True)
                    job = {"system": system, "config": name, "batch": batch, "steps": args.steps,
                           "warmup": args.warmup if system == "ours" else 0, "workers": args.workers,
                           "threads": args.threads, "manifest": str(manifest)}
                    r = run_worker(__file__, job, Path(tmp))
                    rows.append({**job, **r, "throughput": r["audio_seconds"] / r["seconds"]})
    speedup = {(r["config"], r["batch"]): r["throughput"] for r in rows if r["system"] == "baseline"}
    print_table(["config", "parameters", "system", "batch", "steps", "audio s", "padding", "seconds", "CPU s",
                 "audio s / s", "x baseline"],
                [[r["config"], f"{r['parameters']:,}", r["system"], str(r["batch"]), str(r["steps"]),
                  f"{r['audio_seconds']:.0f}", f"{100 * (1 - r['audio_seconds'] / r['padded_seconds']):.0f}%",
                  f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.2f}", f"{r['throughput']:.2f}",
                  f"{r['throughput'] / speedup[r['config'], r['batch']]:.2f}"] for r in rows])
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
