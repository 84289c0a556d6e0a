"""The experiment config: one dataclass per YAML section, read from conf/ (or any path) with command-line
overrides. Plain data: reading a config loads neither Lightning nor torch (torch only to read the network of the
bundle that a fine-tuning config's init_from names)."""

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr.core import config
from asr.core.augment import AugmentConfig
from asr.core.model_config import ModelConfig
from asr.core.text import TokenizerConfig


def find_conf_dir() -> Path:
    """The configs named by `asr train NAME`: asr/conf in an installed wheel (pyproject.toml ships the top-level
    conf/ as the package asr.conf), else conf/ beside asr/ in a source checkout (editable installs included)."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / "conf"
    return shipped if shipped.is_dir() else package.parent / "conf"


CONF_DIR = find_conf_dir()


@dataclass
class DataConfig:
    train_manifests: list[str] = field(default_factory=list)
    # per train manifest: how many times each of its utterances is drawn per epoch (empty: once each); 0.25
    # draws a quarter of them, chosen anew every epoch, 3 each three times: a few hours of real speech then
    # keep their share beside tens of hours of synthetic speech
    train_weights: list[float] = field(default_factory=list)
    val_manifests: list[str] = field(default_factory=list)
    max_batch_seconds: float = 120.0  # padded audio per batch: len(batch) * longest utterance
    max_batch_size: int | None = None
    num_workers: int = 2  # DataLoader processes decoding audio
    sorta_grad: bool = True  # first epoch shortest-first
    min_duration: float = 0.1  # seconds; shorter and longer utterances are dropped
    max_duration: float = 30.0
    # training speeds, e.g. [0.9, 1.0, 1.1]: a batch may then exceed max_batch_seconds by 1 / min(speed)
    speed_perturb: list[float] = field(default_factory=list)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # rooms, noise, telephone, gain, clipping

    def __post_init__(self):
        if not 0 <= self.min_duration <= self.max_duration:
            raise config.ConfigError(
                f"data: need 0 <= min_duration <= max_duration, got {self.min_duration} and {self.max_duration}"
            )
        if any(speed <= 0 for speed in self.speed_perturb):
            raise config.ConfigError(f"data.speed_perturb: speeds must be above 0, got {self.speed_perturb}")
        if self.train_weights and len(self.train_weights) != len(self.train_manifests):
            raise config.ConfigError(f"data.train_weights: one weight per train manifest "
                                     f"({len(self.train_manifests)}), got {len(self.train_weights)}")
        if self.train_weights and (min(self.train_weights) < 0 or not any(self.train_weights)):
            raise config.ConfigError(f"data.train_weights must not be negative, and one must be above 0: "
                                     f"{self.train_weights}")
        if not (self.max_batch_seconds > 0 and (self.max_batch_size is None or self.max_batch_size >= 1)
                and self.num_workers >= 0):
            raise config.ConfigError(f"data: need max_batch_seconds > 0, max_batch_size >= 1 (or null) and "
                                     f"num_workers >= 0, "
                                     f"got {self.max_batch_seconds}, {self.max_batch_size} and {self.num_workers}")


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
            raise config.ConfigError(f"optim: need lr > 0, weight_decay >= 0, warmup_ratio in [0, 1], "
                                     f"final_lr_ratio >= 0 "
                                     f"and two betas in [0, 1), got {self}")


@dataclass
class ExperimentConfig:
    exp_dir: str = "exp/run"  # checkpoints, logs and the exported model go here
    seed: int = 0  # the one seed: weights' init, batch order, augmentation and DataLoader workers
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: dict[str, Any] = field(default_factory=dict)  # keyword arguments of lightning.Trainer
    save_every_n_steps: int = 500  # checkpoints/last.ckpt every N optimizer steps (0: never) and every epoch end
    # fine-tune: start from a model bundle's weights ("default": the shipped model) and take its network; the
    # config's model section then sets only TRAINING_ONLY keys (others it may set only to the bundle's values)
    init_from: str | None = None
    init_new_head: bool = False  # with init_from: copy all but the output layer, which starts afresh (a new tokenizer)

    def __post_init__(self):
        if self.save_every_n_steps < 0:
            raise config.ConfigError(f"save_every_n_steps must be 0 (only at epoch ends) or more, "
                                     f"got {self.save_every_n_steps}")
        if self.init_new_head and not self.init_from:
            raise config.ConfigError("init_new_head=true keeps the encoder of the init_from model, but init_from is "
                                     "not set")


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
    # training sets it from the tokenizer, whatever a YAML says (a model: that is not a section, from_dict refuses)
    if isinstance(data.get("model"), dict) and "vocab_size" in data["model"]:
        raise config.ConfigError(f"{path}: model.vocab_size is not a setting: the model has one output per token "
                                 "of the tokenizer (the tokenizer: section), so its size comes from there; remove "
                                 "model.vocab_size")
    try:
        if data.get("init_from") and isinstance(data.get("model", {}), dict):  # else from_dict names the error
            data["model"] = fine_tuning_model(str(data["init_from"]), data.get("model") or {})
        cfg = config.from_dict(ExperimentConfig, data)
    except config.ConfigError as err:
        raise config.ConfigError(f"{path}: {err}") from None
    return cfg  # the trainer: section is checked against lightning.Trainer when training starts


# model settings that change training but not the shape or meaning of the weights
TRAINING_ONLY = {"dropout", "frontend.freq_masks", "frontend.freq_mask_width", "frontend.time_masks",
                 "frontend.time_mask_width", "frontend.time_mask_max_ratio"}


# what a streaming model started from a bidirectional bundle changes (asr.training.module.init_weights)
STREAMING_CONVERSION = {"rnn_bidirectional", "lookahead", "frontend.normalize"}

# network settings a fine-tuned model may make larger than its bundle's: more LSTM layers, the new ones on top
# starting as layers that pass their input on (asr.training.module.pass_through_layers)
GROWABLE = {"rnn_layers"}


def fine_tuning_model(source: str, model: dict) -> dict:
    """The model section of a config that fine-tunes the bundle `source`: the bundle's network with the config's
    `model` over it, whose other keys must have the bundle's values (ConfigError naming the first that does not).
    Training-only settings are the config's (or the defaults), never the bundle's: a run's regularisation is what
    its config says, whatever the run that made the bundle used. A streaming model (rnn_bidirectional: false) may
    start from a bidirectional bundle: its STREAMING_CONVERSION settings are then the config's. A deeper model
    may start from a bundle of fewer LSTM layers (GROWABLE)."""
    theirs = flat(network := bundle_network(source))
    converting = model.get("rnn_bidirectional") is False and theirs.get("rnn_bidirectional", True)
    for key, value in flat(model).items():
        if converting and key in STREAMING_CONVERSION:
            continue
        if key in GROWABLE and key in theirs and value > theirs[key]:
            continue
        if key in theirs and value != theirs[key]:
            raise config.ConfigError(
                f"init_from {source}: model.{key} is {value} here but {theirs[key]} in the bundle, whose network a "
                f"fine-tuned model keeps: drop model.{key} (only {', '.join(sorted(TRAINING_ONLY))} may change, "
                f"and rnn_layers grow)")
    return merged(network, model)


def bundle_network(source: str) -> dict:
    """The model settings of bundle `source` that its weights depend on, as a model section; not the vocabulary
    size, which is the tokenizer's."""
    from asr.core.bundle import BundleError, bundle_header
    from asr.core.paths import model_path

    try:  # the header only: init_weights loads the weights when training starts
        network = config.to_dict(bundle_header(model_path(source))[0])
    except BundleError as err:
        raise config.ConfigError(f"init_from: {err}") from None
    for key in TRAINING_ONLY | {"vocab_size"}:
        *sections, name = key.split(".")
        functools.reduce(dict.get, sections, network).pop(name)
    return network


def flat(section: dict, prefix: str = "") -> dict[str, Any]:
    """Nested sections as one mapping: {"frontend": {"n_mels": 80}} -> {"frontend.n_mels": 80}."""
    out = {}
    for key, value in section.items():
        out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out


def merged(base: dict, over: dict) -> dict:
    """`over`'s values over `base`'s, section by section."""
    return base | {key: merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict)
                   else value for key, value in over.items()}
