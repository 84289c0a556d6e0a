"""Two-process DDP on the CPU (gloo) through `asr train`, observed per rank by tests/record_ranks.py and run in
a subprocess (so pytest is not re-launched): each rank trains and validates on its own share of the utterances,
the logged WER is the WER of the union, only rank 0 writes, and a killed run resumes from its last checkpoint."""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from asr.core.bundle import bundle_from_checkpoint
from asr.core.manifest import read_manifest
from asr.core.metrics import ErrorCounts
from asr.corpora.librispeech import prepare_librispeech
from asr.inference.evaluate import evaluate
from asr.inference.transcribe import load_model

pytestmark = pytest.mark.slow

RECORDER = Path(__file__).with_name("record_ranks.py")


def ddp_config(path: Path, manifest: Path) -> Path:
    """The shipped model's network, fine-tuned from it at a tiny learning rate (so its WER is neither 0 nor
    100%) on 2 CPU processes, for 2 epochs of a few batches each."""
    path.write_text(yaml.safe_dump({
        "init_from": "default",
        "data": {"train_manifests": [str(manifest)], "val_manifests": [str(manifest)],
                 "max_batch_seconds": 6, "num_workers": 0},
        "optim": {"lr": 1.0e-5},
        "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "max_epochs": 2,
                    "enable_progress_bar": False, "log_every_n_steps": 1},
    }))
    return path


def train(cfg: Path, exp: Path, record: Path, *flags: str, kill_at_epoch: int | None = None):
    """`asr train` under the recorder in its own process group; each rank's records, by rank."""
    record.mkdir()
    env = {**os.environ, "RECORD_DIR": str(record), "OMP_NUM_THREADS": "1"}
    if kill_at_epoch is not None:
        env["KILL_AT_EPOCH"] = str(kill_at_epoch)
    result = subprocess.run([sys.executable, str(RECORDER), "train", str(cfg), f"exp_dir={exp}", *flags], env=env,
                            capture_output=True, text=True, timeout=300, start_new_session=True)
    expected = -signal.SIGKILL if kill_at_epoch is not None else 0
    assert result.returncode == expected, result.stderr[-3000:]
    return [[json.loads(line) for line in (record / f"rank-{r}.jsonl").read_text().splitlines()] for r in (0, 1)]


def batches(rows: list[dict], kind: str, epoch: int) -> list[list[str]]:
    return [row["utterances"] for row in rows if row.get("batch") == kind and row["epoch"] == epoch]


def logged_val_wer(exp: Path, epoch: int) -> float:
    with (exp / "csv" / "version_0" / "metrics.csv").open() as f:
        return next(float(row["val/wer"]) for row in csv.DictReader(f) if row["val/wer"] and int(row["epoch"]) == epoch)


def test_ranks_share_the_data_score_together_write_once_and_resume(librispeech_tree, tmp_path):
    manifest = prepare_librispeech(librispeech_tree, tmp_path)["train-tiny"]
    everything = {str(u.audio_filepath) for u in read_manifest(manifest)}
    cfg, exp = ddp_config(tmp_path / "ddp.yaml", manifest), tmp_path / "exp"

    # 1. killed (every rank, SIGKILL) as epoch 1 starts, after epoch 0 was trained, validated and checkpointed
    ranks = train(cfg, exp, tmp_path / "run1", kill_at_epoch=1)
    for kind in ("train", "val"):
        shares = [[u for batch in batches(rows, kind, 0) for u in batch] for rows in ranks]
        assert len(batches(ranks[0], kind, 0)) == len(batches(ranks[1], kind, 0)) >= 2
        assert not set(shares[0]) & set(shares[1]), f"{kind}: an utterance on both ranks"
        assert sorted(shares[0] + shares[1]) == sorted(everything), f"{kind}: utterances repeated or left out"

    # only rank 0 writes: checkpoints, and logs (Lightning gives the other ranks dummy loggers)
    assert not [row for row in ranks[1] if "saved" in row] and any("saved" in row for row in ranks[0])
    loggers = [next(row["loggers"] for row in rows if "loggers" in row) for rows in ranks]
    assert loggers[0] == ["SummaryWriter", "ExperimentWriter"] and loggers[1] == ["_DummyExperiment"] * 2

    # the logged validation WER is the WER of the union of both ranks' shares, from summed edit counts
    best = next((exp / "checkpoints").glob("best-epoch=0-*.ckpt"))
    recognizer = load_model(bundle_from_checkpoint(best, tmp_path / "epoch0.safetensors"), "cpu")
    report = evaluate(recognizer, read_manifest(manifest))
    assert logged_val_wer(exp, 0) == pytest.approx(report.counts.wer, abs=1e-6)
    per_rank = [sum((ErrorCounts(row["word_errors"], row["words"]) for row in report.rows
                     if row["audio_filepath"] in {u for batch in batches(rows, "val", 0) for u in batch}),
                    ErrorCounts()).wer for rows in ranks]
    assert abs(sum(per_rank) / 2 - report.counts.wer) > 1e-5  # the mean of the ranks' WERs would fail the check above

    # 2. rerunning the same command with --resume continues from the last checkpoint and ends at the same step
    steps_per_epoch = len(batches(ranks[0], "train", 0))
    checkpoint_step = torch.load(exp / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert checkpoint_step == steps_per_epoch
    resumed = train(cfg, exp, tmp_path / "run2", "--resume")
    for rows in resumed:
        trained = [row for row in rows if row.get("batch") == "train"]
        assert (trained[0]["epoch"], trained[0]["step"]) == (1, checkpoint_step)
        assert [row["epoch"] for row in trained] == [1] * steps_per_epoch
    assert torch.load(exp / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2 * steps_per_epoch
    assert (exp / "model.safetensors").exists()
