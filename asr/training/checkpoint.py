"""Checkpoints that survive a killed process: written atomically, "last" saved every N optimizer steps,
at every epoch end and when SIGTERM stops the run, and carrying what Lightning leaves out so that a resumed
run continues exactly: the random number generators' states (the sampler's place in its epoch is
SpeechDataModule's state).
"""

import os
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

LAST = "last"  # checkpoints/last.ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint to PATH.partial beside it, fsync, then os.replace it onto PATH: a reader (or a
    resumed run) finds the old checkpoint or the new one, never a part of one. Lightning's own save goes
    through a file in the system's temporary folder and shutil.move, which copies (not atomic) when that
    folder is on another file system, and never fsyncs."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        self.write(checkpoint, partial)
        os.replace(partial, path)
        fsync(path.parent)  # the rename itself reaches the disk

    def write(self, checkpoint: dict, path: Path) -> None:
        """torch.save straight to the file (no copy of the checkpoint in memory), then fsync it."""
        torch.save(checkpoint, path)
        fsync(path)


def fsync(path: Path) -> None:
    """Flush a file's or a folder's contents to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def last_checkpoints(folder: Path, every_n_steps: int) -> list[ModelCheckpoint]:
    """FOLDER/last.ckpt, refreshed at the end of every training epoch (after its validation, if any) and every
    `every_n_steps` optimizer steps (0: only at epoch ends). Two callbacks write the one file: Lightning's
    ModelCheckpoint takes one trigger each.

    Never at validation end, Lightning's default when validation is not once per epoch: such a "last" lags
    behind (the final epoch is missing) and a resume from a mid-epoch validation end re-runs part of an epoch
    under a wrong epoch count (measured with val_check_interval=0.5: epoch 1 run twice, 19 steps for 20).
    """
    def last(kind=ModelCheckpoint, **trigger) -> ModelCheckpoint:
        return kind(dirpath=folder, filename=LAST, monitor=None, save_top_k=1, enable_version_counter=False,
                    **trigger)

    at_epoch_end = last(every_n_epochs=1, save_on_train_epoch_end=True)
    return [at_epoch_end] + ([last(StepCheckpoint, every_n_train_steps=every_n_steps)] if every_n_steps else [])


class StepCheckpoint(ModelCheckpoint):
    """The step-triggered "last", skipped on a batch that a validation follows (the epoch's last batch, or a
    val_check_interval point): Lightning saves it before that validation runs, and a run resumed from it goes
    on past the validation without running it (measured: killed during epoch-end validations, five epochs had
    no val/wer and the best model differed). The next save, N steps on or at the epoch's end, follows it."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not validation_follows(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class RandomState(L.Callback):
    """Every rank's RNG states (Python, NumPy, torch CPU and CUDA) in every checkpoint, put back on each rank
    when training starts from one, so dropout and SpecAugment draw what an uninterrupted run would have drawn."""

    def __init__(self):
        self.loaded: list[dict] | None = None

    def state_dict(self) -> dict:
        """Gathered from all ranks: Lightning builds the checkpoint on every rank and rank 0 writes it."""
        ranks = [rng_states()]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(ranks, rng_states())
        return {"ranks": ranks}

    def load_state_dict(self, state: dict) -> None:
        self.loaded = state["ranks"]

    def on_train_start(self, trainer, pl_module) -> None:
        """After the sanity check's draws, as at the moment the checkpoint was written."""
        if self.loaded:
            set_rng_states(self.loaded[trainer.global_rank % len(self.loaded)])
            self.loaded = None


def rng_states() -> dict:
    """This process's random number generators' states, as data that torch.load(weights_only=True) reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class SaveOnSigterm(Checkpoint):
    """Write PATH (checkpoints/last.ckpt) when SIGTERM stops training: what `timeout`, SLURM and Kubernetes send
    before they kill. Lightning's signal handler only notes the signal; its loops then stop after the optimizer
    step under way by raising SIGTERMException (which train() turns into exit status 143).

    The checkpoint is written where Lightning's own are, so that its loops resume from it as from theirs: at the
    end of the step under way or, when a validation follows that step, at the validation's end (a validation under
    way is let finish first, where Lightning would stop it between two batches: a run resumed from a checkpoint
    written before or amid a validation goes on past it without running it, as StepCheckpoint's docstring says).
    In an epoch's last step nothing more is written: the epoch-end "last" is, before Lightning stops. Nor during
    the sanity check, before training has moved: the checkpoint the run started from (if any) is where it stands.
    A Checkpoint callback, so Lightning runs it after the ModelCheckpoints: the validation's score is then in the
    best checkpoint's record that it saves.
    """

    def __init__(self, path: Path):
        self.path = path
        self.deferred = False  # a SIGTERM held back until the validation under way ends

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.received_sigterm and not validation_follows(trainer) and not last_of_epoch(trainer):
            trainer.save_checkpoint(self.path)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.received_sigterm and not trainer.sanity_checking:
            trainer._signal_connector.received_sigterm, self.deferred = False, True

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.deferred:  # the training loop stops after this step, as it would have without a validation
            trainer._signal_connector.received_sigterm, self.deferred = True, False
        if trainer.received_sigterm and not trainer.sanity_checking and not last_of_epoch(trainer):
            trainer.save_checkpoint(self.path)


def validation_follows(trainer) -> bool:
    """Whether a validation runs after the training batch that has just ended (the test Lightning 2.6's training
    epoch loop makes after on_train_batch_end)."""
    loop = trainer.fit_loop
    return loop.epoch_loop._should_check_val_fx(loop._data_fetcher)


def last_of_epoch(trainer) -> bool:
    """Whether the training batch that has just ended is its epoch's last."""
    return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
