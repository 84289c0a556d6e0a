"""Training faults through the real `asr train` in subprocesses: SIGKILL mid-epoch, mid-checkpoint-write and
mid-validation, and SIGTERM at an epoch's end, mid-epoch and mid-validation, then --resume ends exactly where an
uninterrupted run ends (two corpora mixed, every augmentation
on), with the same validations logged and the same best model exported; a NaN loss is skipped and counted; an
out-of-memory batch is reported with its size. tests/fault_train.py injects each fault at the step it is given.
"""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_asr
from fault_train import InjectFault

from asr.core import config
from asr.core.manifest import read_manifest, write_manifest
from asr.core.text import build_tokenizer
from asr.training.config import load_experiment_config
from asr.training.datamodule import SpeechDataModule
from asr.training.faults import BatchFaults, BatchSize, all_finite, is_out_of_memory, out_of_memory_error
from asr.training.module import ASRModule
from asr.training.train import build_trainer

STEPS = 10  # 2 epochs of 5 batches: 20 utterances, about 4 a batch
FAULT_TRAIN = Path(__file__).with_name("fault_train.py")


@pytest.fixture(scope="module")
def manifest(librispeech_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("manifests")
    run_asr("prepare", "librispeech", librispeech_tree, out)
    return out / "train-tiny.jsonl"


def train(manifest, exp, *extra, fault: str | None = None) -> subprocess.CompletedProcess:
    """`asr train tiny` for 2 epochs with dropout (so the RNG matters), "last" every 3 steps, validation
    twice an epoch (Lightning would then save "last" at validation ends), with a fault ("WHAT@STEP") injected by
    tests/fault_train.py."""
    command = [sys.executable, str(FAULT_TRAIN), fault] if fault else [sys.executable, "-m", "asr"]
    args = ["train", "tiny", f"data.train_manifests=[{manifest}]", f"data.val_manifests=[{manifest}]",
            f"exp_dir={exp}", "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "model.dropout=0.1",
            "save_every_n_steps=3", "trainer.val_check_interval=0.5", *extra]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def last(exp) -> dict:
    return torch.load(exp / "checkpoints" / "last.ckpt", weights_only=True)


def validations(exp) -> dict[tuple[str, str], tuple[str, str]]:
    """(epoch, step) -> (val/wer, val/loss) of every validation the runs of an experiment logged in their CSV
    logs, a later run's overriding an earlier's (a resumed run repeats those run after its checkpoint)."""
    logged = {}
    for version in sorted((exp / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        for row in csv.DictReader(version.open()):
            if row.get("val/wer"):
                logged[row["epoch"], row["step"]] = row["val/wer"], row["val/loss"]
    return logged


def mixed_and_augmented(manifest, folder) -> list[str]:
    """Overrides that train on the manifest's halves as two corpora, with speed perturbation and every augmentation
    on: each draw's random choices must replay exactly on resume."""
    utterances = read_manifest(manifest)
    halves = [folder / "first.jsonl", folder / "second.jsonl"]
    write_manifest(halves[0], utterances[: len(utterances) // 2])
    write_manifest(halves[1], utterances[len(utterances) // 2:])
    return [f"data.train_manifests=[{halves[0]},{halves[1]}]", "data.train_weights=[1,1]",
            "data.speed_perturb=[0.9,1.0,1.1]", "data.augment.rooms=2",
            *[f"data.augment.{effect}=0.5" for effect in ("reverb", "noise", "babble", "telephone", "gain", "clip")]]


@pytest.mark.slow
def test_sigkill_mid_epoch_mid_write_and_mid_validation_then_resume_ends_as_an_uninterrupted_run(manifest, tmp_path):
    mix = mixed_and_augmented(manifest, tmp_path)
    reference = train(manifest, tmp_path / "reference", *mix)
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = last(tmp_path / "reference")
    assert expected["global_step"] == STEPS
    assert len(validations(tmp_path / "reference")) == 4  # after steps 2, 4, 7 and 9: val_check_interval=0.5

    # killed halfway through writing step 6's checkpoint, resumed from step 5's (the end of epoch 0); killed
    # again mid-epoch after step 8 (step 6's checkpoint saved), resumed; killed during the validation that
    # follows step 9 (whose step-triggered save is skipped, as a validation follows it), resumed to the end
    exp, saved = tmp_path / "exp", []
    faults = ["kill-mid-write@6", "kill@8", "kill-validating@9"]
    for version, fault in enumerate(faults):
        killed = train(manifest, exp, *mix, *(["--resume"] if version else []), fault=fault)
        assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL: no cleanup ran
        saved.append(last(exp)["global_step"])
        if fault.startswith("kill-mid-write"):  # the half it wrote lies beside it, unread
            half = exp / "checkpoints" / "last.ckpt.partial"
            assert 0 < half.stat().st_size < (exp / "checkpoints" / "last.ckpt").stat().st_size
    resumed = train(manifest, exp, *mix, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr  # Lightning's warning: asr's data module resumes the epoch

    # every validation run, at the same step, with the same scores; hence the same best model, exported
    assert validations(exp) == validations(tmp_path / "reference")
    assert (exp / "model.safetensors").read_bytes() == (tmp_path / "reference" / "model.safetensors").read_bytes()
    assert saved == [5, 6, 6]  # whole checkpoints, never the half-written one nor one a validation follows
    final = last(exp)
    assert (final["epoch"], final["global_step"]) == (expected["epoch"], STEPS)
    # the same batches in the same order with the same dropout masks: the very same weights and moments
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][name], tensor), name
    moments = zip(expected["optimizer_states"][0]["state"].values(), final["optimizer_states"][0]["state"].values())
    assert all(torch.equal(a["exp_avg_sq"], b["exp_avg_sq"]) and a["step"] == b["step"] for a, b in moments)
    rows = list(csv.DictReader((exp / "csv" / f"version_{len(faults)}" / "metrics.csv").open()))
    assert {r["epoch"] for r in rows if r["epoch"]} == {"1"}  # epoch 1 finished once, as epoch 1

    bundle = tmp_path / "resumed.safetensors"
    run_asr("export", exp / "checkpoints" / "last.ckpt", bundle)
    assert bundle.stat().st_size > 0


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_143_and_resume_ends_as_an_uninterrupted_run(manifest, tmp_path):
    reference = train(manifest, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = last(tmp_path / "reference")

    # SIGTERM in the last batch of epoch 0 (stops before the epoch's end hooks), mid-epoch, and during the
    # validation after step 7 (let finish, so it is logged and counts for the best model); resumed each time
    exp, saved = tmp_path / "exp", []
    for version, fault in enumerate(["term@4", "term@5", "term-validating@7"]):
        stopped = train(manifest, exp, *(["--resume"] if version else []), fault=fault)
        assert stopped.returncode == 143, stopped.stderr[-3000:]  # 128 + SIGTERM: a failure to `set -e` and SLURM
        saved.append(last(exp)["global_step"])
        assert f"stopped by SIGTERM at step {saved[-1]}; `asr train ... --resume` continues from" in stopped.stderr
        assert not (exp / "model.safetensors").exists()
    assert saved == [5, 6, 7]  # the step under way is finished, then saved
    resumed = train(manifest, exp, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert validations(exp) == validations(tmp_path / "reference")
    assert (exp / "model.safetensors").read_bytes() == (tmp_path / "reference" / "model.safetensors").read_bytes()
    final = last(exp)
    assert (final["epoch"], final["global_step"]) == (expected["epoch"], STEPS)
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][name], tensor), name


@pytest.mark.slow
def test_nan_gradients_skip_the_update_and_are_counted(manifest, tmp_path):
    exp = tmp_path / "exp"
    out = train(manifest, exp, "trainer.max_epochs=1", fault="nan@2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step 2: non-finite loss or gradient on a batch of" in out.stderr and "update skipped (1 so far)" in out.stderr
    ckpt = last(exp)
    assert ckpt["global_step"] == 5
    assert all(state["step"] == 4 for state in ckpt["optimizer_states"][0]["state"].values())  # AdamW stepped 4 times
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    rows = list(csv.DictReader((exp / "csv" / "version_0" / "metrics.csv").open()))
    skipped = {int(r["step"]): float(r["train/skipped_steps"]) for r in rows if r.get("train/skipped_steps")}
    assert skipped and max(skipped.values()) == 1 and all(v == (s >= 2) for s, v in skipped.items()), skipped


@pytest.mark.slow
def test_out_of_memory_names_the_batch_and_a_lower_cap(manifest, tmp_path):
    out = train(manifest, tmp_path / "exp", "trainer.max_epochs=1", fault="oom@1")  # a real 1 PiB allocation
    assert out.returncode == 2, out.stderr[-3000:]
    error = out.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"asr train: error: out of memory on a batch of \d+ utterances, [\d.]+ s of audio "
                        r"\([\d.]+ s padded\); lower the cap on padded audio per batch, "
                        r"e\.g\. data\.max_batch_seconds=3 \(now 6\)", error), error
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    err = out_of_memory_error(BatchSize(torch.tensor([16000, 32000, 8000])), 120.0)  # (B,) samples
    assert "3 utterances, 3.5 s of audio (6.0 s padded)" in str(err)


class ManualASR(ASRModule):
    """The same model trained with Lightning's manual optimization."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(super().training_step(batch, batch_idx))
        optimizer.step()


def test_nan_gradients_are_skipped_under_manual_optimization(manifest, tmp_path):
    cfg = load_experiment_config("tiny", [f"data.train_manifests=[{manifest}]", f"data.val_manifests=[{manifest}]",
                                          f"exp_dir={tmp_path}", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                                          "trainer.limit_val_batches=0", "trainer.gradient_clip_val=null",
                                          "trainer.enable_progress_bar=false"])
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    module = ManualASR(config.to_dict(cfg), tokenizer.to_dict())
    trainer = build_trainer(cfg, callbacks=[InjectFault("nan", 1)])
    trainer.fit(module, datamodule=SpeechDataModule(cfg.data, tokenizer))
    faults = next(c for c in trainer.callbacks if isinstance(c, BatchFaults))
    assert faults.skipped == 1
    steps = {state["step"].item() for state in trainer.optimizers[0].state.values()}
    assert steps == {2.0}  # 3 batches, one update skipped
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_finiteness_is_checked_per_element_not_by_a_norm_that_overflows():
    huge = torch.full((4,), 1e30)  # finite, though its float32 2-norm overflows to inf
    assert all_finite([huge, torch.zeros(3)]) and all_finite([])
    assert not all_finite([huge, torch.tensor([0.0, float("nan")])])
    assert not all_finite([torch.tensor([float("-inf")], dtype=torch.bfloat16)])
