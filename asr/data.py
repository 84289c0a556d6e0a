"""From manifests (asr.manifest) to padded batches: what CTC can train on, LibriSpeech preparation, dataset,
collate, the duration-bucketed distributed batch sampler (which also mixes corpora by weight) and the
LightningDataModule that ties them together.

DataLoader workers decode and augment audio (asr.augment); features are computed later, on the model's device.
Every random choice a training example needs is drawn from one seed per draw, which the sampler deals out
with the batches: a resumed run replays the same augmentation as an uninterrupted one.
"""

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from .audio import SAMPLE_RATE, AudioError, audio_duration, load_audio
from .augment import AugmentConfig, Augmenter
from .manifest import Utterance, read_manifest, write_manifest
from .model import ModelConfig, output_lengths
from .text import normalize

log = logging.getLogger(__name__)

DURATION_GRID = 0.05  # seconds; the sampler buckets durations on this grid and shuffles within a cell
HEADER_READ_THREADS = 16  # header reads wait on the disk, not the CPU
MAX_UNREADABLE_IN_A_ROW = 10  # undecodable files in a row before training stops: the data is broken, not a file


def ctc_problems(utterances: Sequence[Utterance], tokenizer, model: ModelConfig,
                 speed: float = 1.0) -> list[str | None]:
    """For each utterance, why CTC cannot train `model` on it, or None: its text normalises to nothing or does
    not encode, or needs more output steps (labels + adjacent repeats, which need a blank between them) than
    its duration, played at `speed`, gives the model."""
    samples = torch.tensor([int(u.duration / speed * SAMPLE_RATE) for u in utterances], dtype=torch.long)  # (N,)
    steps = output_lengths(model, samples).tolist() if utterances else []
    problems = []
    for u, available in zip(utterances, steps):
        text = normalize(u.text)
        if u.text.strip() and not text:
            problems.append(f"nothing is left of the transcript {u.text!r} after normalisation (to A-Z, ' and space)")
            continue
        try:
            ids = tokenizer.encode(text)
        except ValueError as err:
            problems.append(str(err))
            continue
        needed = len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
        problems.append(None if needed <= available else
                        f"the transcript needs {needed} output steps ({len(ids)} labels + repeats) but "
                        f"{u.duration:g} s of audio gives the model only {available}: CTC cannot align it")
    return problems


def trainable(utterances: Sequence[Utterance], tokenizer, model: ModelConfig, speed: float,
              where: str) -> list[Utterance]:
    """The utterances whose audio file exists and that CTC can align (see ctc_problems, at the fastest training
    `speed`); the others are dropped with a warning that counts them and names the first."""
    problems = [None if u.audio_filepath.is_file() else f"no such audio file {u.audio_filepath}"
                for u in utterances]
    problems = [p or q for p, q in zip(problems, ctc_problems(utterances, tokenizer, model, speed))]
    dropped = [(u, p) for u, p in zip(utterances, problems) if p]
    if dropped:
        log.warning("%s: dropped %d of %d utterances that cannot be trained on (first: %s: %s); "
                    "`asr check-manifest` lists them all", where, len(dropped), len(utterances),
                    dropped[0][0].audio_filepath, dropped[0][1])
    return [u for u, p in zip(utterances, problems) if not p]


def prepare_librispeech(root: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write `out_dir/<subset>.jsonl` for every subset of a LibriSpeech-layout folder.

    ROOT is `LibriSpeech/` (several subsets) or one subset folder; the layout is
    SUBSET/SPEAKER/CHAPTER/{SPEAKER-CHAPTER.trans.txt, SPEAKER-CHAPTER-NNNN.flac}. Durations come
    from the audio headers, text is normalised. Transcript lines without audio are skipped with a
    warning. Returns {subset: manifest path}, sorted by subset.
    """
    root, out_dir = Path(root), Path(out_dir)
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(
            f"{root}: no *.trans.txt transcripts found; point ROOT at a folder in LibriSpeech layout "
            "(LibriSpeech/ or a subset such as LibriSpeech/train-clean-100)"
        )
    rows = []  # (subset, audio path, text)
    for trans in transcripts:
        subset = trans.absolute().parents[2].name
        for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            utt_id, _, text = line.strip().partition(" ")
            if not utt_id:
                continue
            audio = trans.parent / f"{utt_id}.flac"
            if audio.is_file():
                rows.append((subset, audio, normalize(text)))
            else:
                log.warning("%s line %d: no audio %s; skipping this utterance", trans, n, audio)
    with ThreadPoolExecutor(HEADER_READ_THREADS) as pool:
        durations = list(pool.map(audio_duration, [audio for _, audio, _ in rows]))
    by_subset: dict[str, list[Utterance]] = {}
    for (subset, audio, text), duration in sorted(zip(rows, durations)):
        by_subset.setdefault(subset, []).append(Utterance(Path(os.path.abspath(audio)), duration, text))
    manifests = {}
    for subset, utterances in by_subset.items():
        manifests[subset] = out_dir / f"{subset}.jsonl"
        write_manifest(manifests[subset], utterances)
    return manifests


class Draw(NamedTuple):
    """One utterance drawn into an epoch, with the seed of its augmentation."""

    index: int
    seed: int


class DurationBatchSampler(Sampler[list[Draw]]):
    """Batches of utterances of similar duration, each costing at most `max_batch_seconds` of padded audio.

    Utterances are sorted by duration (rounded up to DURATION_GRID; random order within a grid cell
    when shuffling), cut greedily into batches with len(batch) * max(duration) <= max_batch_seconds
    (an utterance longer than the cap is a batch of its own) and at most `max_batch_size` items, and
    the batches are shuffled. With `sorta_grad`, epoch 0 goes shortest first (SortaGrad, DeepSpeech2).

    Mixing: with `groups` (the corpus of each utterance) and `weights` (one per corpus), a shuffled epoch draws
    each utterance of corpus c weights[c] times: floor(w) times each, plus round(frac(w) x size) of them chosen
    anew every epoch; a sorted pass (validation) draws every utterance once. Each draw carries a seed for its
    augmentation. Without fractional weights the batch count depends only on the durations.

    For DDP every rank builds the same list, the largest batches are split in two until the count
    divides `num_replicas`, and rank r takes batches r, r + W, ...: equal counts, no utterance twice.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        *,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        sorta_grad: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        groups: Sequence[int] | None = None,
        weights: Sequence[float] | None = None,
    ):
        if max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be positive, got {max_batch_seconds}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1 (or None for no limit), got {max_batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        if len(durations) < num_replicas:
            raise ValueError(
                f"{len(durations)} utterances cannot be shared among {num_replicas} ranks without repeating "
                "some; use more data or fewer devices"
            )
        self.durations = torch.as_tensor(durations, dtype=torch.float64)  # (N,)
        groups = [0] * len(durations) if groups is None else list(groups)
        self.groups = torch.as_tensor(groups, dtype=torch.long)  # (N,) corpus of each utterance
        self.weights = [1.0] * (max(groups, default=0) + 1) if weights is None else list(weights)
        if len(self.groups) != len(durations) or any(g >= len(self.weights) for g in self.groups.unique().tolist()):
            raise ValueError("groups: one corpus index per utterance, each below the number of weights")
        self.cells = torch.ceil(self.durations / DURATION_GRID - 1e-6).clamp(min=1).long()  # (N,) grid cells
        self.max_batch_seconds = max_batch_seconds
        self.max_batch_size = max_batch_size or math.inf
        self.shuffle, self.sorta_grad, self.seed = shuffle, sorta_grad, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.batches_done = 0  # batches of this epoch already yielded (from this rank's share)
        self.resume_from = 0  # batches the next pass skips, once (set by load_state_dict)
        self._cache: tuple[int, list[list[int]]] | None = None  # (epoch, this rank's batches)

    @property
    def sampler(self) -> "DurationBatchSampler":
        """Itself: Lightning calls set_epoch on `dataloader.batch_sampler.sampler` at every epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order is produced next (Lightning calls this every epoch)."""
        if epoch != self.epoch:
            self.epoch, self.batches_done, self.resume_from = epoch, 0, 0

    def state_dict(self) -> dict:
        """The epoch and how many of its batches this rank has yielded (batches handed to the DataLoader)."""
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration produces `state["epoch"]` and skips its first `batches_done` batches."""
        self.epoch, self.batches_done = state["epoch"], state["batches_done"]
        self.resume_from = self.batches_done

    def __len__(self) -> int:
        """Batches per epoch for this rank, skipped ones included (the same for every epoch)."""
        return len(self._rank_batches())

    def __iter__(self):
        batches, start = self._rank_batches(), self.resume_from
        self.resume_from = 0  # an abandoned pass (Lightning's sanity check of 2 batches) does not shorten the next
        for i in range(start, len(batches)):
            self.batches_done = i + 1
            yield batches[i]
        self.batches_done = 0  # a finished epoch: iterating again starts it from its beginning

    def _rank_batches(self) -> list[list[Draw]]:
        """This rank's batches of the current epoch, cached."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._global_batches()[self.rank :: self.num_replicas])
        return self._cache[1]

    def _global_batches(self) -> list[list[Draw]]:
        """All ranks' batches of the current epoch, identical on every rank."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if not self.shuffle:
            order = torch.argsort(self.durations, stable=True)
        else:
            pool = self._epoch_pool(g)  # (N',) the utterances this epoch draws, some several times
            if self.sorta_grad and self.epoch == 0:
                order = pool[torch.argsort(self.durations[pool], stable=True)]
            else:  # shuffled, then stably sorted by grid cell: random order within each cell
                perm = pool[torch.randperm(len(pool), generator=g)]
                order = perm[torch.argsort(self.cells[perm], stable=True)]
        batches = self._cut(order.tolist())
        batches = self._split_to_multiple(batches)
        if self.shuffle and not (self.sorta_grad and self.epoch == 0):
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        seeds = iter(torch.randint(2**62, (sum(map(len, batches)),), generator=g).tolist())
        return [[Draw(i, next(seeds)) for i in batch] for batch in batches]

    def _epoch_pool(self, g: torch.Generator) -> torch.Tensor:
        """Indices (N',) of the utterances a shuffled epoch draws: each corpus c's weights[c] times over."""
        pool = []
        for corpus, weight in enumerate(self.weights):
            members = (self.groups == corpus).nonzero().squeeze(1)  # (n_c,)
            repeats, share = divmod(weight, 1.0)
            pool += [members] * int(repeats)
            pool.append(members[torch.randperm(len(members), generator=g)[: round(share * len(members))]])
        return torch.cat(pool)

    def _cut(self, order: list[int]) -> list[list[int]]:
        """Cut indices sorted by grid cell into batches within the padded-seconds and size caps."""
        cap_cells = self.max_batch_seconds / DURATION_GRID + 1e-6
        cells = self.cells.tolist()
        batches, batch = [], []
        for i in order:
            cell = cells[i]  # non-decreasing along `order`: the longest of the batch so far
            if batch and ((len(batch) + 1) * cell > cap_cells or len(batch) == self.max_batch_size):
                batches.append(batch)
                batch = []
            batch.append(i)
        return batches + [batch]

    def _split_to_multiple(self, batches: list[list[int]]) -> list[list[int]]:
        """Split the costliest batches in two until their count divides num_replicas."""
        cells = self.cells.tolist()
        while len(batches) % self.num_replicas:
            splittable = [j for j, b in enumerate(batches) if len(b) > 1]
            if not splittable:
                raise ValueError(
                    f"{len(batches)} single-utterance batches cannot be shared equally among "
                    f"{self.num_replicas} ranks; raise max_batch_seconds / max_batch_size or use fewer devices"
                )
            j = max(splittable, key=lambda j: len(batches[j]) * cells[batches[j][-1]])
            half = len(batches[j]) // 2
            batches[j : j + 1] = [batches[j][:half], batches[j][half:]]
        return batches


class SpeechDataset(Dataset):
    """Draws (or plain indices) -> (wave (S,) float32, target (L,) long, index); audio is decoded here and, with
    an `augmenter`, augmented with the draw's seed (asr.augment: speed perturbation, rooms, noise, ...)."""

    def __init__(self, utterances: Sequence[Utterance], tokenizer, augmenter: Augmenter | None = None):
        self.utterances = utterances
        self.tokenizer = tokenizer
        self.augmenter = augmenter

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, draw: Draw | int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Utterance i, or, when its audio cannot be decoded (a file corrupt past its header), the next one that
        can: the bad file is reported by name and costs one example, not the run, and every batch (and under DDP
        every rank) keeps its size."""
        i, seed = draw if isinstance(draw, tuple) else (draw, draw)
        for j in range(i, i + MAX_UNREADABLE_IN_A_ROW):
            u = self.utterances[j % len(self)]
            try:
                wave = load_audio(u.audio_filepath)
            except AudioError as err:
                log.warning("skipped in training: %s", err)
                continue
            target = torch.tensor(self.tokenizer.encode(normalize(u.text)), dtype=torch.long)  # (L,)
            if self.augmenter is not None:
                wave = self.augmenter(wave, torch.Generator().manual_seed(seed), self.other)
            return wave, target, j % len(self)
        raise AudioError(self.utterances[i].audio_filepath, f"unreadable, as are the {MAX_UNREADABLE_IN_A_ROW - 1} "
                         "utterances after it; check the data with `asr check-manifest --decode`")

    def other(self, rng: torch.Generator) -> torch.Tensor:
        """A random utterance's wave (S',), for babble; silence if it cannot be decoded."""
        u = self.utterances[int(torch.randint(len(self), (), generator=rng))]
        try:
            return load_audio(u.audio_filepath)
        except AudioError:
            return torch.zeros(0)


class Batch(NamedTuple):
    """A padded batch; Lightning moves it to the device and the DataLoader pins it, field by field."""

    waves: torch.Tensor  # (B, S_max) float32, zero-padded
    wave_lengths: torch.Tensor  # (B,) long, samples
    targets: torch.Tensor  # (B, L_max) long, padded with 0 (the blank)
    target_lengths: torch.Tensor  # (B,) long
    indices: torch.Tensor  # (B,) long, positions in the dataset


def collate(items: Sequence[tuple[torch.Tensor, torch.Tensor, int]]) -> Batch:
    """SpeechDataset items -> Batch."""
    waves, targets, indices = zip(*items)
    return Batch(
        waves=pad_sequence(waves, batch_first=True),
        wave_lengths=torch.tensor([len(w) for w in waves], dtype=torch.long),
        targets=pad_sequence(targets, batch_first=True, padding_value=0),
        target_lengths=torch.tensor([len(t) for t in targets], dtype=torch.long),
        indices=torch.tensor(indices, dtype=torch.long),
    )


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
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.min_duration <= self.max_duration:
            raise ValueError(
                f"data: need 0 <= min_duration <= max_duration, got {self.min_duration} and {self.max_duration}"
            )
        if any(speed <= 0 for speed in self.speed_perturb):
            raise ValueError(f"data.speed_perturb: speeds must be above 0, got {self.speed_perturb}")
        if self.train_weights and len(self.train_weights) != len(self.train_manifests):
            raise ValueError(f"data.train_weights: one weight per train manifest ({len(self.train_manifests)}), "
                             f"got {len(self.train_weights)}")
        if self.train_weights and (min(self.train_weights) < 0 or not any(self.train_weights)):
            raise ValueError(f"data.train_weights must not be negative, and one must be above 0: {self.train_weights}")
        if not (self.max_batch_seconds > 0 and (self.max_batch_size is None or self.max_batch_size >= 1)
                and self.num_workers >= 0):
            raise ValueError(f"data: need max_batch_seconds > 0, max_batch_size >= 1 (or null) and num_workers >= 0, "
                             f"got {self.max_batch_seconds}, {self.max_batch_size} and {self.num_workers}")


class SpeechDataModule(L.LightningDataModule):
    """Train and validation DataLoaders over manifests, sharded across ranks by DurationBatchSampler.

    Build the Trainer with use_distributed_sampler=False so that Lightning leaves the sampler alone.
    """

    def __init__(self, cfg: DataConfig, tokenizer, model: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg
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
                self.augmenter = Augmenter(self.cfg.augment, self.cfg.speed_perturb, seed=self.cfg.seed)
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
            raise ValueError(f"{', '.join(manifests)}: no utterance lasts between min_duration and max_duration")
        if self.model is not None:
            kept = trainable(kept, self.tokenizer, self.model, speed, ", ".join(manifests))
            if utterances and not kept:
                raise ValueError(f"{', '.join(manifests)}: no utterance can be trained on; run `asr check-manifest`")
        return kept

    def train_dataloader(self) -> DataLoader:
        if not self.train_set:
            raise ValueError("no training data: set data.train_manifests (and call setup() first)")
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        if not self.val_set:
            raise ValueError("no validation data: set data.val_manifests (and call setup() first)")
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
            seed=self.cfg.seed,
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
            generator=torch.Generator().manual_seed(self.cfg.seed),  # workers' seeds, not drawn from the global RNG
        )


def mix_summary(manifests: Sequence[str], corpora: Sequence[Sequence[Utterance]], weights: Sequence[float]) -> str:
    """"a.jsonl 30.8 h x 0.3 = 9.2 h (50%), b.jsonl ..." : each corpus's hours drawn per epoch and share."""
    drawn = [w * sum(u.duration for u in corpus) / 3600 for corpus, w in zip(corpora, weights)]
    total = sum(drawn) or 1.0
    return ", ".join(f"{m} {h / w if w else 0:.1f} h x {w:g} = {h:.1f} h ({100 * h / total:.0f}%)"
                     for m, w, h in zip(manifests, weights, drawn))
