"""Running an experiment: the Trainer (devices, precision, checkpoints, logs, all from the config's `trainer:`
section, so one command runs on a CPU or many GPUs), the checks made before it starts, and resume."""

import inspect
import logging
import pickle
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_type_hints

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from asr.core import config
from asr.core.bundle import refused_pickle
from asr.core.manifest import read_manifest
from asr.core.text import build_tokenizer
from asr.training.checkpoint import LAST, AtomicCheckpointIO, RandomState, SaveOnSigterm, last_checkpoints
from asr.training.config import DataConfig, ExperimentConfig
from asr.training.datamodule import SpeechDataModule
from asr.training.faults import BatchFaults, is_out_of_memory, out_of_memory_error
from asr.training.module import ASRModule, init_weights
from asr.training.progress import ProgressLog
from asr.training.statistics import estimate_statistics, needs_statistics

log = logging.getLogger(__name__)


def check_trainer_keys(trainer: dict) -> None:
    """Every key an argument of lightning.Trainer, every value of the type the Trainer annotates (in place)."""
    known = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "callbacks", "logger"}
    unknown = sorted(set(trainer) - known)
    if unknown:
        raise config.ConfigError(f"unknown config key 'trainer.{unknown[0]}': not an argument of lightning.Trainer")
    types = get_type_hints(L.Trainer.__init__)
    for key, value in trainer.items():
        trainer[key] = config.convert(types.get(key, Any), value, f"trainer.{key}")


def check_trains_something(trainer: dict) -> None:
    """ConfigError for trainer settings under which fit would run no step and write no model, yet exit as if done:
    max_steps=0, max_epochs=0 or limit_train_batches=0."""
    for key, means in (("max_steps", "no optimizer step"), ("max_epochs", "no epoch"),
                       ("limit_train_batches", "no training batch")):
        if key in trainer and trainer[key] == 0:
            raise config.ConfigError(f"trainer.{key}={trainer[key]} trains nothing ({means}, so no model is written); "
                                     f"set it above 0, or leave it out")


def build_trainer(cfg: ExperimentConfig, callbacks: Sequence[Callback] = (),
                  checkpoint_io: CheckpointIO | None = None) -> L.Trainer:
    """The config's Trainer with asr's callbacks, then `callbacks`; checkpoints written by `checkpoint_io`
    (default: AtomicCheckpointIO)."""
    exp_dir = Path(cfg.exp_dir)
    best = ModelCheckpoint(dirpath=exp_dir / "checkpoints", filename="best-{epoch}-{step}",
                           monitor="val/wer", mode="min", save_top_k=1)
    # Lightning 2.6 refreshes save_last only when a best checkpoint is saved: keep "last" separately.
    last = last_checkpoints(exp_dir / "checkpoints", cfg.save_every_n_steps)
    ours = [best, *last, SaveOnSigterm(last_path(cfg)), BatchFaults(), RandomState(),
            LearningRateMonitor(logging_interval="step")]
    if cfg.trainer.get("enable_progress_bar", True):  # a bar on a terminal, else lines a log file can hold
        ours.append(RichProgressBar() if sys.stderr.isatty() else ProgressLog())
    settings = {"precision": default_precision(cfg.trainer.get("accelerator", "auto")), **cfg.trainer}
    # the CSV log is appended to at every logging step, so a killed run loses none of its validations
    csv_log = CSVLogger(exp_dir, name="csv", flush_logs_every_n_steps=1)
    return L.Trainer(default_root_dir=exp_dir, callbacks=[*ours, *callbacks],
                     logger=[TensorBoardLogger(exp_dir, name="tensorboard"), csv_log],
                     plugins=[checkpoint_io or AtomicCheckpointIO()], use_distributed_sampler=False, **settings)


def default_precision(accelerator: str) -> str:
    """bf16-mixed where the Trainer's accelerator is a GPU with bf16, else 32-true: a config that asks for the CPU
    trains in float32 on a GPU machine too (on a CPU, bf16 autocast is no clear win: README.md)."""
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def last_path(cfg: ExperimentConfig) -> Path:
    """checkpoints/last.ckpt: where --resume continues from."""
    return Path(cfg.exp_dir) / "checkpoints" / f"{LAST}.ckpt"


def last_checkpoint(cfg: ExperimentConfig) -> Path | None:
    """The newest of checkpoints/last.ckpt and the hpc_ckpt_N.ckpt Lightning writes when SLURM signals a job
    before its time limit or pre-emption (so a requeued job continues from there, not from the last "last")."""
    exp = Path(cfg.exp_dir)
    found = [p for p in [last_path(cfg), *exp.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)


def check_before_writing(cfg: ExperimentConfig) -> None:
    """What would stop a run at its start once its log folders are made: every manifest readable, and exp_dir a
    folder or a path where one can be made."""
    check_manifests_given(cfg.data)
    for manifest in cfg.data.train_manifests + cfg.data.val_manifests:
        read_manifest(manifest)
    exp_dir = Path(cfg.exp_dir)
    existing = next(p for p in [exp_dir, *exp_dir.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise config.ConfigError(f"exp_dir={cfg.exp_dir}: {existing} is a file, not a folder")


def no_advert(record: logging.LogRecord) -> bool:
    """False for Lightning's tips to install its cloud services (litlogger, litmodels) at every run."""
    return not str(record.msg).startswith("💡 Tip:")


def check_manifests_given(data: DataConfig) -> None:
    """ConfigError, before a Trainer starts, if the config names no training or no validation manifest, or one
    that is not there."""
    for key, use in (("train_manifests", "to train on"), ("val_manifests", "to pick checkpoints by")):
        if not getattr(data, key):
            raise config.ConfigError(
                f"no data.{key}: name the manifests {use} (JSON lines made by `asr prepare` or by hand; see the "
                "README's Data section), e.g. `asr train tiny data.train_manifests=[train.jsonl] "
                "data.val_manifests=[dev.jsonl]`")
        for manifest in getattr(data, key):
            if not Path(manifest).is_file():
                raise config.ConfigError(f"data.{key}: {manifest}: no such manifest (check the path)")


def train(cfg: ExperimentConfig, resume: bool = False, callbacks: Sequence[Callback] = (),
          checkpoint_io: CheckpointIO | None = None) -> ModelCheckpoint:
    """Fit the model; with `resume`, continue from the experiment's last checkpoint if there is one.
    `callbacks` and `checkpoint_io` go to build_trainer: to watch or change a run from outside."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(no_advert)
    check_trainer_keys(cfg.trainer)
    check_trains_something(cfg.trainer)
    L.seed_everything(cfg.seed, workers=True)
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    module = ASRModule(config.to_dict(cfg), tokenizer.to_dict())
    datamodule = SpeechDataModule(cfg.data, tokenizer, cfg.model, seed=cfg.seed)
    check_before_writing(cfg)
    try:
        trainer = build_trainer(cfg, callbacks, checkpoint_io)
    except (MisconfigurationException, ModuleNotFoundError) as err:  # e.g. max_epochs=-2, a TPU without torch_xla
        raise config.ConfigError(f"trainer settings: {err}") from None
    ckpt_path = last_checkpoint(cfg) if resume else None
    if resume and ckpt_path is None:
        log.warning("--resume: no checkpoint in %s/checkpoints yet, starting from %s", cfg.exp_dir,
                    cfg.init_from or "scratch")
    if cfg.init_from and ckpt_path is None:  # a resumed run has its own weights
        init_weights(module, cfg.init_from, cfg.init_new_head)
    if ckpt_path is None and needs_statistics(module.model):
        estimate_statistics(module.model, cfg.data.train_manifests, cfg.seed)
    try:
        with warnings.catch_warnings():
            # on a mid-epoch resume Lightning warns that the DataLoader is not resumable: it looks only at the
            # DataLoader, but the place in the epoch is restored by SpeechDataModule.load_state_dict
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable")
            # Lightning 2.6 calls torch's deprecated LeafSpec(): nothing a user of asr can change
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        saved = last_checkpoint(cfg)
        log.warning("stopped by SIGTERM at step %d; %s", trainer.global_step,
                    f"`asr train ... --resume` continues from {saved}" if saved else "no checkpoint was written yet")
        raise SIGTERMException(128 + signal.SIGTERM) from None  # 143: killed by SIGTERM, as a shell reports it
    except pickle.UnpicklingError as err:  # only the resumed checkpoint is unpickled
        raise refused_pickle(ckpt_path, err) from None
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        batch = next(c.batch for c in trainer.callbacks if isinstance(c, BatchFaults))
        raise out_of_memory_error(batch, cfg.data.max_batch_seconds) from err
    return trainer.checkpoint_callback
