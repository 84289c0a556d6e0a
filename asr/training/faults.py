"""Training faults a long run must survive: a non-finite loss or gradient (the update is skipped and
counted, the weights stay as they were) and a batch too large for memory (reported with its size and
a lower cap to try). Tests inject these faults from outside (tests/fault_train.py): nothing here waits for them.
"""

import logging

import lightning as L
import torch

from asr.core.audio import SAMPLE_RATE

log = logging.getLogger(__name__)


class BatchSize:
    """What a batch holds, for messages: utterances, seconds of audio and padded seconds. Kept as the lengths
    tensor and read only when printed, so the training step never waits on the device for it."""

    def __init__(self, wave_lengths: torch.Tensor):  # (B,) samples
        self.wave_lengths = wave_lengths

    def __str__(self) -> str:
        lengths = self.wave_lengths.tolist()
        return (f"{len(lengths)} utterances, {sum(lengths) / SAMPLE_RATE:.1f} s of audio "
                f"({len(lengths) * max(lengths) / SAMPLE_RATE:.1f} s padded)")


class BatchFaults(L.Callback):
    """Skip the optimizer update when the loss or any gradient is NaN or infinite, count the skipped steps
    ("train/skipped_steps" in the logs) and warn with the batch's size and step; remember the batch in
    flight for an out-of-memory report.

    It runs after backward and before gradient clipping and the update (Lightning's on_before_optimizer_step,
    in automatic and manual optimization alike) and drops the gradients: AdamW then leaves every parameter,
    its moments and step count untouched. Under DDP the verdict is all-reduced, so all ranks skip together.
    """

    def __init__(self):
        self.skipped = 0
        self.batch: BatchSize | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = BatchSize(batch.wave_lengths)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.batch = BatchSize(batch.wave_lengths)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if trainer.strategy.reduce_boolean_decision(not all_finite(grads), all=False):  # on any rank
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            self.skipped += 1
            log.warning("step %d: non-finite loss or gradient on a batch of %s; update skipped (%d so far)",
                        trainer.global_step, self.batch, self.skipped)
        pl_module.log("train/skipped_steps", float(self.skipped), on_step=True, on_epoch=False)

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = state["skipped"]


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether no element of any tensor is NaN or infinite (one synchronisation for all of them)."""
    return not tensors or bool(torch.stack([t.detach().isfinite().all() for t in tensors]).all())


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator's failure (RuntimeError "DefaultCPUAllocator: can't
    allocate memory" / "not enough memory")."""
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and ("DefaultCPUAllocator" in text or "not enough memory" in text))


def out_of_memory_error(batch: BatchSize | None, max_batch_seconds: float) -> MemoryError:
    """The error to raise for an out-of-memory batch: its size and a lower data.max_batch_seconds to try."""
    what = f"a batch of {batch}" if batch else "the first batch"
    return MemoryError(f"out of memory on {what}; lower the cap on padded audio per batch, "
                       f"e.g. data.max_batch_seconds={max_batch_seconds / 2:g} (now {max_batch_seconds:g})")
