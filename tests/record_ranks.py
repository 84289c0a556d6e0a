"""`asr train` observed from outside, for tests/test_ddp.py: the real command with one more callback, which
writes what every rank does to RECORD_DIR/rank-R.jsonl, one JSON object a line:

    {"batch": "train"|"val", "epoch": E, "step": S, "utterances": [audio paths]}   each batch, as it starts
    {"saved": PATH}                                                               each checkpoint this rank writes
    {"loggers": [experiment class names]}                                         once, at the start of fit

With KILL_AT_EPOCH=E, rank 0 SIGKILLs its whole process group (every rank) as the first batch of epoch E
starts: a pre-empted job. Usage: RECORD_DIR=d python tests/record_ranks.py train CONFIG key=value ...
"""

import functools
import json
import os
import signal
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from asr.cli import main
from asr.training import train as training


class Recorder(Callback):
    def __init__(self, folder: Path):
        self.folder = folder

    def write(self, trainer, row: dict) -> None:
        with (self.folder / f"rank-{trainer.global_rank}.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")

    def setup(self, trainer, pl_module, stage):
        io = trainer.strategy.checkpoint_io
        save = io.save_checkpoint

        def recorded_save(checkpoint, path, *args, **kwargs):
            self.write(trainer, {"saved": str(path)})
            return save(checkpoint, path, *args, **kwargs)

        io.save_checkpoint = recorded_save

    def on_fit_start(self, trainer, pl_module):
        self.write(trainer, {"loggers": [type(logger.experiment).__name__ for logger in trainer.loggers]})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.is_global_zero and str(trainer.current_epoch) == os.environ.get("KILL_AT_EPOCH"):
            os.killpg(os.getpgrp(), signal.SIGKILL)
        self.record(trainer, "train", batch, trainer.datamodule.train_set)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.record(trainer, "val", batch, trainer.datamodule.val_set)

    def record(self, trainer, kind: str, batch, utterances) -> None:
        paths = [str(utterances[i].audio_filepath) for i in batch.indices.tolist()]
        self.write(trainer, {"batch": kind, "epoch": trainer.current_epoch, "step": trainer.global_step,
                             "utterances": paths})


if __name__ == "__main__":
    training.train = functools.partial(training.train, callbacks=[Recorder(Path(os.environ["RECORD_DIR"]))])
    sys.exit(main(sys.argv[1:]))
