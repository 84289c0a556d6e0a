"""The LightningDataModule: reads the manifests, drops what cannot be trained on, and builds the loaders from
the sampler (asr.training.sampler) and the dataset (asr.training.dataset)."""

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import lightning as L
import torch
from torch.utils.data import DataLoader

from asr.core.audio import HEADER_READ_THREADS
from asr.core.augment import Augmenter
from asr.core.config import ConfigError
from asr.core.ctc import ctc_problems
from asr.core.manifest import ManifestError, Utterance, read_manifest
from asr.core.model_config import ModelConfig
from asr.training.config import DataConfig
from asr.training.dataset import SpeechDataset, audio_problem, collate
from asr.training.sampler import DurationBatchSampler

log = logging.getLogger(__name__)


class SpeechDataModule(L.LightningDataModule):
    """Train and validation DataLoaders over manifests, sharded across ranks by DurationBatchSampler.

    Build the Trainer with use_distributed_sampler=False so that Lightning leaves the sampler alone. `seed`, the
    experiment's, orders the batches and seeds their augmentation and the DataLoader workers.
    """

    def __init__(self, cfg: DataConfig, tokenizer, model: ModelConfig | None = None, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.seed = seed
        self.tokenizer = tokenizer
        self.model = model  # with it, utterances CTC cannot align for this model are dropped when read
        self.train_set: list[Utterance] = []
        self.train_groups: list[int] = []  # the train manifest of each training utterance
        self.val_set: list[Utterance] = []
        self.resume_at: dict | None = None  # the training sampler's place, from a checkpoint
        self.augmenter: Augmenter | None = None  # made once per run in setup: its room simulation takes seconds

    def state_dict(self) -> dict:
        """The training sampler's place, saved in every checkpoint: the epoch and how many of its batches the
        training loop has processed (counted by the loop, not the sampler, which the DataLoader's workers and
        Lightning's prefetch run ahead of; the same on every rank)."""
        if self.trainer is None:
            return {}
        return {"epoch": self.trainer.current_epoch,
                "batches_done": self.trainer.fit_loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the training loader made next starts `state["epoch"]` after its first `batches_done` batches."""
        self.resume_at = state or None

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            speed = max(self.cfg.speed_perturb, default=1.0)
            corpora = [self._read([m], speed) for m in self.cfg.train_manifests]
            self.train_set = [u for corpus in corpora for u in corpus]
            self.train_groups = [c for c, corpus in enumerate(corpora) for _ in corpus]
            if self.augmenter is None and (self.cfg.augment.enabled or self.cfg.speed_perturb):
                self.augmenter = Augmenter(self.cfg.augment, self.cfg.speed_perturb, seed=self.seed)
            if self.cfg.train_weights:
                log.info("training mix per epoch: %s", mix_summary(self.cfg.train_manifests, corpora,
                                                                   self.cfg.train_weights))
        if stage in (None, "fit", "validate"):
            self.val_set = self._read(self.cfg.val_manifests)

    def _read(self, manifests: list[str], speed: float = 1.0) -> list[Utterance]:
        """The utterances of several manifests within [min_duration, max_duration] (and trainable at `speed`)."""
        utterances = [u for m in manifests for u in read_manifest(m)]
        kept = [u for u in utterances if self.cfg.min_duration <= u.duration <= self.cfg.max_duration]
        if len(kept) < len(utterances):
            log.info("%s: dropped %d of %d utterances outside [%g, %g] s", ", ".join(manifests),
                     len(utterances) - len(kept), len(utterances), self.cfg.min_duration, self.cfg.max_duration)
        if utterances and not kept:
            raise ManifestError(f"{', '.join(manifests)}: no utterance lasts between min_duration and max_duration")
        if self.model is not None:
            kept = trainable(kept, self.tokenizer, self.model, speed, ", ".join(manifests))
            if utterances and not kept:
                raise ManifestError(f"{', '.join(manifests)}: no utterance can be trained on; run `asr check-manifest`")
        return kept

    def train_dataloader(self) -> DataLoader:
        if not self.train_set:
            raise ConfigError("no training data: set data.train_manifests (and call setup() first)")
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        if not self.val_set:
            raise ConfigError("no validation data: set data.val_manifests (and call setup() first)")
        return self._loader(self.val_set, train=False)

    def _loader(self, utterances: list[Utterance], train: bool) -> DataLoader:
        """Training: shuffled (shortest first in epoch 0 with sorta_grad), speed-perturbed; else in order."""
        attached = self.trainer is not None
        sampler = DurationBatchSampler(
            [u.duration for u in utterances],
            self.cfg.max_batch_seconds,
            max_batch_size=self.cfg.max_batch_size,
            shuffle=train,
            sorta_grad=train and self.cfg.sorta_grad,
            seed=self.seed,
            num_replicas=self.trainer.world_size if attached else 1,
            rank=self.trainer.global_rank if attached else 0,
            groups=self.train_groups if train else None,
            weights=(self.cfg.train_weights or None) if train else None,
        )
        if train and self.resume_at:
            sampler.load_state_dict(self.resume_at)
        return DataLoader(
            SpeechDataset(utterances, self.tokenizer, self.augmenter if train else None),
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.cfg.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.cfg.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),  # workers' seeds, not drawn from the global RNG
        )


def mix_summary(manifests: Sequence[str], corpora: Sequence[Sequence[Utterance]], weights: Sequence[float]) -> str:
    """"a.jsonl 30.8 h x 0.3 = 9.2 h (50%), b.jsonl ..." : each corpus's hours drawn per epoch and share."""
    drawn = [w * sum(u.duration for u in corpus) / 3600 for corpus, w in zip(corpora, weights)]
    total = sum(drawn) or 1.0
    return ", ".join(f"{m} {h / w if w else 0:.1f} h x {w:g} = {h:.1f} h ({100 * h / total:.0f}%)"
                     for m, w, h in zip(manifests, weights, drawn))


def trainable(utterances: Sequence[Utterance], tokenizer, model: ModelConfig, speed: float,
              where: str) -> list[Utterance]:
    """The utterances whose audio file is readable and as long as the manifest says (headers only: about 0.2 s per
    1,000 files, README.md) and that CTC can align (see ctc_problems, at the fastest training `speed`); the others
    are dropped with a warning that counts them and names the first."""
    with ThreadPoolExecutor(HEADER_READ_THREADS) as pool:
        problems = list(pool.map(audio_problem, utterances))
    problems = [p or q for p, q in zip(problems, ctc_problems(utterances, tokenizer, model, speed))]
    dropped = [(u, p) for u, p in zip(utterances, problems) if p]
    if dropped:
        log.warning("%s: dropped %d of %d utterances that cannot be trained on (first: %s: %s); "
                    "`asr check-manifest` lists them all", where, len(dropped), len(utterances),
                    dropped[0][0].audio_filepath, dropped[0][1])
    return [u for u, p in zip(utterances, problems) if not p]
