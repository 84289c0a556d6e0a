"""The duration-bucketed distributed batch sampler: batches of similar length under a padded-audio budget,
sharded across ranks, corpora mixed by weight, and one augmentation seed dealt with every draw, so a resumed
run replays the same batches and the same augmentation as an uninterrupted one."""

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Sampler

from asr.core.config import ConfigError

DURATION_GRID = 0.05  # seconds; the sampler buckets durations on this grid and shuffles within a cell


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
            raise ConfigError(
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
        self._cache: tuple[int, list[list[Draw]]] | None = None  # (epoch, this rank's batches)

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
        """Batches of the current epoch for this rank, skipped ones included. The same for every epoch unless a
        corpus weight is fractional: each epoch then draws other utterances, whose durations cut into a count of
        their own."""
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
        shortest_first = self.sorta_grad and self.epoch == 0  # SortaGrad's first epoch, when shuffling
        if not self.shuffle:
            order = torch.argsort(self.durations, stable=True)
        else:
            pool = self._epoch_pool(g)  # (N',) the utterances this epoch draws, some several times
            if shortest_first:
                order = pool[torch.argsort(self.durations[pool], stable=True)]
            else:  # shuffled, then stably sorted by grid cell: random order within each cell
                perm = pool[torch.randperm(len(pool), generator=g)]
                order = perm[torch.argsort(self.cells[perm], stable=True)]
        batches = self._cut(order.tolist())
        batches = self._split_to_multiple(batches)
        if self.shuffle and not shortest_first:
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
                raise ConfigError(
                    f"{len(batches)} single-utterance batches cannot be shared equally among "
                    f"{self.num_replicas} ranks; raise max_batch_seconds / max_batch_size or use fewer devices"
                )
            j = max(splittable, key=lambda j: len(batches[j]) * cells[batches[j][-1]])
            half = len(batches[j]) // 2
            batches[j : j + 1] = [batches[j][:half], batches[j][half:]]
        return batches
