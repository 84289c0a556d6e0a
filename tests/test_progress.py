"""A training run logged to a file or a pipe (a recipe's log, a batch job's output) shows its progress: the step of
the total, the loss and the time left, as plain lines (no progress bar's carriage returns)."""

import logging
import os
import re
import subprocess
import sys

import pytest
from conftest import run_asr

from asr.core import config
from asr.core.text import build_tokenizer
from asr.training.config import load_experiment_config
from asr.training.datamodule import SpeechDataModule
from asr.training.module import ASRModule
from asr.training.progress import ProgressLog, clock
from asr.training.train import build_trainer


@pytest.mark.slow
def test_asr_train_into_a_pipe_logs_its_step_of_the_total_the_loss_and_the_time_left(librispeech_tree, tmp_path):
    run_asr("prepare", "librispeech", librispeech_tree, tmp_path)
    manifest = tmp_path / "train-tiny.jsonl"
    out = subprocess.run([sys.executable, "-m", "asr", "train", "tiny", f"data.train_manifests=[{manifest}]",
                          f"data.val_manifests=[{manifest}]", f"exp_dir={tmp_path / 'exp'}", "trainer.max_epochs=2"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if line.startswith("INFO asr.training.progress: ")]
    assert len(lines) == 2, out.stderr[-3000:]  # one per epoch end (and one every 30 s, which this run is not)
    pattern = (r"INFO asr\.training\.progress: step (\d+)/10 \(\d+%\), epoch (\d)/2, train/loss [\d.]+, "
               r"val/wer [\d.]+, (\d+m)?\d+s elapsed, about (\d+m)?\d+s left")
    assert [re.fullmatch(pattern, line).group(1, 2) for line in lines] == [("5", "1"), ("10", "2")], lines
    assert lines[-1].endswith("about 0s left")
    assert "\r" not in out.stderr  # no progress bar drawn into the log


def test_times_read_as_a_clock():
    assert [clock(s) for s in (7, 121, 3725.2)] == ["7s", "2m01s", "1h02m05s"]


def test_a_line_every_few_seconds_within_an_epoch(librispeech_tree, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("asr"), "propagate", True)  # asr.cli.main stops it, for stderr alone
    run_asr("prepare", "librispeech", librispeech_tree, tmp_path)
    manifest = tmp_path / "train-tiny.jsonl"
    cfg = load_experiment_config("tiny", [f"data.train_manifests=[{manifest}]", f"data.val_manifests=[{manifest}]",
                                          f"exp_dir={tmp_path / 'exp'}", "trainer.max_epochs=1",
                                          "trainer.limit_train_batches=3", "trainer.limit_val_batches=0"])
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    trainer = build_trainer(cfg)
    progress = next(c for c in trainer.callbacks if isinstance(c, ProgressLog))  # stderr is no terminal here
    progress.every_seconds = 0
    with caplog.at_level(logging.INFO, logger="asr.training.progress"):
        trainer.fit(ASRModule(config.to_dict(cfg), tokenizer.to_dict()), datamodule=SpeechDataModule(cfg.data, tokenizer))
    steps = [re.match(r"step (\d+)/3 \(\d+%\), epoch 1/1, train/loss", r.getMessage()) for r in caplog.records
             if r.name == "asr.training.progress"]
    assert [m.group(1) for m in steps] == ["1", "2", "3", "3"], caplog.text  # each step, then the epoch's end
