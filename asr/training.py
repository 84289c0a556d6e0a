"""Training: the experiment config, the LightningModule (loss, optimiser, metrics) and the Trainer.

The module holds the science; Lightning's Trainer holds devices, precision, checkpoints and logs,
all read from the `trainer:` section of the config, so one command runs on a CPU or many GPUs.
"""

import inspect
import logging
import math
import pickle
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from . import config
from .bundle import DEFAULT_MODEL, load_bundle, refused_pickle
from .checkpoint import LAST, AtomicCheckpointIO, RandomState, last_checkpoints
from .data import DataConfig, SpeechDataModule
from .decoding import greedy_decode
from .faults import BatchFaults, is_out_of_memory, out_of_memory_error, training_step_faults
from .manifest import read_manifest
from .metrics import ErrorRate
from .model import DeepSpeech2, ModelConfig
from .text import BLANK, TokenizerConfig, build_tokenizer, tokenizer_from_dict

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak learning rate: linear warm-up to it, then cosine decay
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_ratio: float = 0.1  # share of all steps spent rising to the peak
    final_lr_ratio: float = 1e-3  # the last step's learning rate, as a share of the peak

    def __post_init__(self):
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 <= self.warmup_ratio <= 1 and self.final_lr_ratio >= 0
                and len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)):
            raise ValueError(f"optim: need lr > 0, weight_decay >= 0, warmup_ratio in [0, 1], final_lr_ratio >= 0 "
                             f"and two betas in [0, 1), got {self}")


@dataclass
class ExperimentConfig:
    exp_dir: str = "exp/run"  # checkpoints, logs and the exported model go here
    seed: int = 0
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: dict[str, Any] = field(default_factory=dict)  # keyword arguments of lightning.Trainer
    save_every_n_steps: int = 500  # checkpoints/last.ckpt every N optimizer steps (0: never) and every epoch end
    init_from: str | None = None  # fine-tune: start from a model bundle's weights ("default": the shipped model)
    init_new_head: bool = False  # with init_from: copy all but the output layer, which starts afresh (a new tokenizer)

    def __post_init__(self):
        if self.save_every_n_steps < 0:
            raise ValueError(f"save_every_n_steps must be 0 (only at epoch ends) or more, "
                             f"got {self.save_every_n_steps}")
        if self.init_new_head and not self.init_from:
            raise ValueError("init_new_head=true keeps the encoder of the init_from model, but init_from is not set")


def resolve_config_path(name: str) -> Path:
    """A config file path, or the name of one in conf/ ("tiny" -> conf/tiny.yaml)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = CONF_DIR / f"{name}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in CONF_DIR.glob("*.yaml")))
        raise config.ConfigError(f"no config file {name!r} and no conf/{name}.yaml; configs in conf/: {known}")
    return candidate


def load_experiment_config(name: str, overrides: list[str] = ()) -> ExperimentConfig:
    path = resolve_config_path(name)
    data = config.apply_overrides(config.read_yaml(path), list(overrides))
    try:
        cfg = config.from_dict(ExperimentConfig, data)
    except config.ConfigError as err:
        raise config.ConfigError(f"{path}: {err}") from None
    check_trainer_keys(cfg.trainer)
    return cfg


def check_trainer_keys(trainer: dict) -> None:
    """Every key an argument of lightning.Trainer, every value of the type the Trainer annotates (in place)."""
    known = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "callbacks", "logger"}
    unknown = sorted(set(trainer) - known)
    if unknown:
        raise config.ConfigError(f"unknown config key 'trainer.{unknown[0]}': not an argument of lightning.Trainer")
    types = get_type_hints(L.Trainer.__init__)
    for key, value in trainer.items():
        trainer[key] = config.convert(types.get(key, Any), value, f"trainer.{key}")


class ASRModule(L.LightningModule):
    """CTC training of DeepSpeech2. Built from plain data, so checkpoints load with weights_only=True."""

    def __init__(self, experiment: dict, tokenizer: dict):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = config.from_dict(ExperimentConfig, experiment)
        self.tokenizer = tokenizer_from_dict(tokenizer)
        self.model = DeepSpeech2(self.cfg.model)
        self.val_errors = ErrorRate()

    def ctc_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean CTC loss of a batch, in float32 whatever the autocast precision, with its outputs."""
        log_probs, lengths = self.model(batch.waves, batch.wave_lengths)  # (B, T, V) float32, (B,)
        with torch.autocast(self.device.type, enabled=False):
            loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, lengths, batch.target_lengths,
                              blank=BLANK, zero_infinity=True)
        return loss, log_probs, lengths

    def training_step(self, batch, batch_idx):
        loss, _, _ = self.ctc_loss(batch)
        loss = training_step_faults(self.global_step, loss)  # only when a fault-injection test asks
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.wave_lengths))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, log_probs, lengths = self.ctc_loss(batch)
        self.log("val/loss", loss, sync_dist=True, batch_size=len(batch.wave_lengths))
        hypotheses = [self.tokenizer.decode(ids) for ids in greedy_decode(log_probs, lengths)]
        references = [self.tokenizer.decode(target[:n].tolist())
                      for target, n in zip(batch.targets, batch.target_lengths.tolist())]
        self.val_errors.update(references, hypotheses)

    def on_before_optimizer_step(self, optimizer):
        """Gradient flow: one 2-norm per layer, before clipping, computed only on the steps Lightning logs
        (every trainer.log_every_n_steps)."""
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            self.log_dict(layer_grad_norms(self.model), on_step=True, on_epoch=False)

    def on_validation_epoch_end(self):
        scores = self.val_errors.compute()  # summed counts across ranks, then divided
        self.log_dict({f"val/{name}": value for name, value in scores.items()}, prog_bar=True)
        self.val_errors.reset()

    def configure_optimizers(self):
        opt = self.cfg.optim
        optimizer = torch.optim.AdamW(self.parameters(), lr=opt.lr, betas=tuple(opt.betas),
                                      weight_decay=opt.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, opt.warmup_ratio, opt.final_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def layer_grad_norms(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The 2-norm of each layer's gradient, keyed by module path up to the layer index: "grad_norm/convs.0",
    "grad_norm/rnns.1", "grad_norm/norms.1", "grad_norm/head". A layer whose norm sinks to 0 has stopped learning.
    """
    squares: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if param.grad is not None:
            parts = name.split(".")
            layer = ".".join(parts[:2] if len(parts) > 2 and parts[1].isdigit() else parts[:1])
            squares[layer] = squares.get(layer, 0) + param.grad.detach().float().pow(2).sum()
    return {f"grad_norm/{layer}": total.sqrt() for layer, total in squares.items()}


# settings that change training but not the shape or meaning of the weights
TRAINING_ONLY = {"dropout", "freq_masks", "freq_mask_width", "time_masks", "time_mask_width", "time_mask_max_ratio"}


def architecture(cfg: ModelConfig) -> dict[str, Any]:
    """The model settings its weights depend on, flat: {"rnn_hidden": 320, "frontend.n_mels": 80, ...}."""
    settings = config.to_dict(cfg)
    flat = {f"frontend.{k}": v for k, v in settings.pop("frontend").items() if k not in TRAINING_ONLY}
    return flat | {k: v for k, v in settings.items() if k not in TRAINING_ONLY}


def init_weights(module: ASRModule, source: str, new_head: bool = False) -> None:
    """Copy a bundle's weights into the module's model; its network and tokenizer must be the config's.

    With `new_head`, the output layer is left as initialised and the tokenizer may differ: the encoder
    (front-end, convolutions, LSTMs) is transferred to a new vocabulary, as NeMo's change_vocabulary does.
    """
    path = DEFAULT_MODEL if source == "default" else Path(source)
    model, tokenizer = load_bundle(path)
    if not new_head and tokenizer.to_dict() != module.tokenizer.to_dict():
        raise config.ConfigError(f"init_from {path}: the bundle's tokenizer differs from this config's "
                                 "(init_new_head=true keeps all but the output layer, which starts afresh)")
    ours, theirs = architecture(module.cfg.model), architecture(model.cfg)
    if new_head:
        del ours["vocab_size"], theirs["vocab_size"]
    if differences := [f"model.{k}: {theirs.get(k)} in the bundle, {ours.get(k)} here"
                       for k in sorted(ours.keys() | theirs.keys()) if ours.get(k) != theirs.get(k)]:
        raise config.ConfigError(f"init_from {path}: the bundle's network differs from this config's "
                                 f"({'; '.join(differences)})")
    weights = model.state_dict()
    if new_head:
        weights |= {f"head.{k}": v for k, v in module.model.head.state_dict().items()}
    module.model.load_state_dict(weights)
    log.info("starting from the weights of %s%s", path, " (all but the output layer)" if new_head else "")


def lr_factor(step: int, total: int, warmup_ratio: float, final_ratio: float) -> float:
    """One cycle: linear warm-up to the peak, then cosine decay to `final_ratio` of it at `total` steps."""
    warmup = max(round(warmup_ratio * total), 1)
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_trainer(cfg: ExperimentConfig) -> L.Trainer:
    exp_dir = Path(cfg.exp_dir)
    best = ModelCheckpoint(dirpath=exp_dir / "checkpoints", filename="best-{epoch}-{step}",
                           monitor="val/wer", mode="min", save_top_k=1)
    # Lightning 2.6 refreshes save_last only when a best checkpoint is saved: keep "last" separately.
    last = last_checkpoints(exp_dir / "checkpoints", cfg.save_every_n_steps)
    callbacks = [best, *last, BatchFaults(), RandomState(), LearningRateMonitor(logging_interval="step")]
    if sys.stderr.isatty():
        callbacks.append(RichProgressBar())
    settings = {"precision": default_precision(cfg.trainer.get("accelerator", "auto")), **cfg.trainer}
    # the CSV log is appended to at every logging step, so a killed run loses none of its validations
    csv_log = CSVLogger(exp_dir, name="csv", flush_logs_every_n_steps=1)
    return L.Trainer(default_root_dir=exp_dir, callbacks=callbacks,
                     logger=[TensorBoardLogger(exp_dir, name="tensorboard"), csv_log],
                     plugins=[AtomicCheckpointIO()], use_distributed_sampler=False, **settings)


def default_precision(accelerator: str) -> str:
    """bf16-mixed where the Trainer's accelerator is a GPU with bf16, else 32-true: a config that asks for the CPU
    trains in float32 on a GPU machine too (on a CPU, bf16 autocast is no clear win: README.md)."""
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def last_checkpoint(cfg: ExperimentConfig) -> Path | None:
    """The newest of checkpoints/last.ckpt and the hpc_ckpt_N.ckpt Lightning writes when SLURM signals a job
    before its time limit or pre-emption (so a requeued job continues from there, not from the last "last")."""
    exp = Path(cfg.exp_dir)
    found = [p for p in [exp / "checkpoints" / f"{LAST}.ckpt", *exp.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
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


def train(cfg: ExperimentConfig, resume: bool = False) -> ModelCheckpoint:
    """Fit the model; with `resume`, continue from the experiment's last checkpoint if there is one."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(no_advert)
    L.seed_everything(cfg.seed, workers=True)
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    module = ASRModule(config.to_dict(cfg), tokenizer.to_dict())
    datamodule = SpeechDataModule(cfg.data, tokenizer, cfg.model)
    check_before_writing(cfg)
    try:
        trainer = build_trainer(cfg)
    except (MisconfigurationException, ModuleNotFoundError) as err:  # e.g. max_epochs=-2, a TPU without torch_xla
        raise config.ConfigError(f"trainer settings: {err}") from None
    ckpt_path = last_checkpoint(cfg) if resume else None
    if resume and ckpt_path is None:
        log.warning("--resume: no checkpoint in %s/checkpoints yet, starting from %s", cfg.exp_dir,
                    cfg.init_from or "scratch")
    if cfg.init_from and ckpt_path is None:  # a resumed run has its own weights
        init_weights(module, cfg.init_from, cfg.init_new_head)
    try:
        with warnings.catch_warnings():
            # on a mid-epoch resume Lightning warns that the DataLoader is not resumable: it looks only at the
            # DataLoader, but the place in the epoch is restored by SpeechDataModule.load_state_dict
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable")
            # Lightning 2.6 calls torch's deprecated LeafSpec(): nothing a user of asr can change
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except pickle.UnpicklingError as err:  # only the resumed checkpoint is unpickled
        raise refused_pickle(ckpt_path, err) from None
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        batch = next(c.batch for c in trainer.callbacks if isinstance(c, BatchFaults))
        raise out_of_memory_error(batch, cfg.data.max_batch_seconds) from err
    return trainer.checkpoint_callback
