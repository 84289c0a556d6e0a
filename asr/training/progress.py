"""Progress of a training run as plain log lines, for a log file or a pipe (a recipe's log, a batch job's output),
where a terminal's progress bar would write carriage returns: every few seconds the step reached of the total,
the loss and the time left; at every epoch end the validation's scores too."""

import logging
import math
import time

from lightning.pytorch.callbacks import ProgressBar

log = logging.getLogger(__name__)

EVERY_SECONDS = 30.0  # between two lines within an epoch


class ProgressLog(ProgressBar):
    """"step 120/600 (20%), epoch 4/30, train/loss 1.234, 2m01s elapsed, about 8m04s left" every `every_seconds`
    and at every epoch end (with val/wer). The time left is the remaining steps at the pace of the
    steps this process has run (validations included), so a resumed run estimates from its own steps."""

    def __init__(self, every_seconds: float = EVERY_SECONDS):
        super().__init__()
        self.every_seconds = every_seconds
        self.enabled = True
        self.start = self.last = 0.0
        self.first_step = 0  # the global step this process started from (above 0 when resumed)

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = self.last = time.monotonic()
        self.first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if time.monotonic() - self.last >= self.every_seconds:
            self.report(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.report(trainer, pl_module, ("val/wer",))

    def report(self, trainer, pl_module, extra: tuple[str, ...] = ()) -> None:
        """One progress line on the log (rank 0 only)."""
        self.last = time.monotonic()
        if not self.enabled:
            return
        metrics = self.get_metrics(trainer, pl_module)
        shown = [f"{key} {metrics[key]:.4g}" for key in ("train/loss", *extra) if key in metrics]
        log.info("%s, %s", position(trainer), ", ".join([*shown, *self.times(trainer)]))

    def times(self, trainer) -> list[str]:
        """["2m01s elapsed", "about 8m04s left"] (the second once a step has run and the total is known)."""
        elapsed = self.last - self.start
        done, total = trainer.global_step - self.first_step, trainer.estimated_stepping_batches
        out = [f"{clock(elapsed)} elapsed"]
        if done > 0 and math.isfinite(total):
            out.append(f"about {clock(elapsed / done * max(total - trainer.global_step, 0))} left")
        return out


def position(trainer) -> str:
    """"step 120/600 (20%), epoch 4/30" (without the totals Lightning does not know: max_epochs=-1 and no max_steps)."""
    total, epochs = trainer.estimated_stepping_batches, trainer.max_epochs
    step = f"step {trainer.global_step}"
    if math.isfinite(total):
        step += f"/{int(total)} ({100 * trainer.global_step / max(total, 1):.0f}%)"
    return f"{step}, epoch {trainer.current_epoch + 1}" + (f"/{epochs}" if epochs and epochs > 0 else "")


def clock(seconds: float) -> str:
    """3725.2 -> "1h02m05s", 121 -> "2m01s", 7 -> "7s"."""
    h, rest = divmod(round(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
