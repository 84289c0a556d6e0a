"""`asr train` with one fault injected, for tests/test_faults.py: the real command, plus a callback (and for a
kill mid-write, a checkpoint writer) that only this script installs, at the optimizer step STEP:

    kill@STEP             SIGKILL as the training batch after STEP optimizer steps starts
    kill-validating@STEP  SIGKILL as a validation batch starts after STEP steps
    kill-mid-write@STEP   SIGKILL with half of STEP's checkpoint written (to the file the package writes it to)
    term@STEP             SIGTERM (what `timeout`, SLURM and Kubernetes send) as the batch after STEP steps starts
    term-validating@STEP  SIGTERM as a validation batch starts after STEP steps
    nan@STEP              every gradient of that step NaN, as a NaN loss makes them
    oom@STEP              a real out-of-memory error during that step's backward (the allocator asked for 1 PiB)

Usage: python tests/fault_train.py WHAT@STEP train CONFIG key=value ... [--resume]
"""

import functools
import os
import signal
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from asr.cli import main
from asr.training import train as training
from asr.training.checkpoint import AtomicCheckpointIO

FAULTS = ("kill", "kill-validating", "kill-mid-write", "term", "term-validating", "nan", "oom")


def kill() -> None:
    """A crash with no chance to clean up."""
    os.kill(os.getpid(), signal.SIGKILL)


class InjectFault(Callback):
    def __init__(self, what: str, step: int):
        self.what, self.step = what, step

    def due(self, trainer, what: str) -> bool:
        return self.what == what and trainer.global_step == self.step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.due(trainer, "kill"):
            kill()
        if self.due(trainer, "term"):
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.due(trainer, "kill-validating"):
            kill()
        if self.due(trainer, "term-validating") and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_before_backward(self, trainer, pl_module, loss):
        if self.due(trainer, "oom"):
            torch.empty(2**50, dtype=torch.uint8)

    def on_after_backward(self, trainer, pl_module):
        if self.due(trainer, "nan"):
            for param in pl_module.parameters():
                if param.grad is not None:
                    param.grad.fill_(float("nan"))


class KillMidWrite(AtomicCheckpointIO):
    """The package's checkpoint writer, killed with the first half of step STEP's checkpoint on the disk."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def write(self, checkpoint: dict, path: Path) -> None:
        super().write(checkpoint, path)
        if checkpoint["global_step"] == self.step:
            os.truncate(path, path.stat().st_size // 2)
            kill()


def fault_extras(fault: str) -> dict:
    """asr.training.train.train's `callbacks` and `checkpoint_io` that inject FAULT ("WHAT@STEP")."""
    what, _, step = fault.partition("@")
    if what not in FAULTS or not step.isdigit():
        raise SystemExit(f"fault_train.py: {fault!r}: expected WHAT@STEP, WHAT one of {', '.join(FAULTS)}")
    return {"callbacks": [InjectFault(what, int(step))],
            "checkpoint_io": KillMidWrite(int(step)) if what == "kill-mid-write" else None}


if __name__ == "__main__":
    training.train = functools.partial(training.train, **fault_extras(sys.argv[1]))  # what `asr train` calls
    sys.exit(main(sys.argv[2:]))
