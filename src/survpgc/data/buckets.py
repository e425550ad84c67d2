"""Batches of cases with similar bag lengths, so a padded batch computes close to its real patches.

A padded batch (:func:`~survpgc.data.dataset.collate_survival`) costs its size times its longest bag: a batch of
16 random cases from a cohort whose bags run from a few hundred to ``n_patches`` patches computes mostly padding.
:class:`BucketBatchSampler` draws a random order of the cases each epoch, cuts it into pools of ``pool`` batches,
sorts each pool by bag length and cuts it into batches, then shuffles the batches: every case once per epoch,
batches of neighbours in length, and a batch's members still change from epoch to epoch (pools are redrawn).
Everything is drawn from ``numpy.random.default_rng([seed, epoch])``: deterministic for a seed and an epoch,
whatever the number of DataLoader workers. Under ``torch.distributed`` each of ``num_replicas`` processes takes
every ``num_replicas``-th batch of the same list (the list padded by its first batches to a multiple of
``num_replicas``, as ``DistributedSampler`` pads), so every process runs the same number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from survpgc.errors import InputError

__all__ = ["BucketBatchSampler", "PrefetchBatches", "padding_share"]


class BucketBatchSampler:
    """Batch sampler (for ``DataLoader(batch_sampler=...)``) grouping cases of similar bag length.

    Parameters
    ----------
    lengths
        Bag length of each case (dataset order), e.g. :meth:`SurvivalDataset.bag_lengths`.
    batch_size
        Cases per batch (the last batch of an epoch may be smaller).
    pool
        Batches per pool that are sorted by length together (>= 2): larger pools pad less, smaller pools mix
        more; a pool of all cases gives the same batches every epoch (only their order changes).
    seed
        Base seed; epoch ``e`` uses ``default_rng([seed, e])``.
    epoch_source
        An object with an ``epoch`` attribute read at the start of each pass (the dataset, whose epoch the
        training loop sets); without it, :meth:`set_epoch` sets the epoch.
    num_replicas, rank
        Processes under ``torch.distributed`` and this process's rank.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        pool: int = 8,
        seed: int = 0,
        epoch_source: Any = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or len(self.lengths) == 0:
            raise InputError(f"`lengths` must be a non-empty 1-D sequence, got shape {self.lengths.shape}")
        for name, value, low in (("batch_size", batch_size, 1), ("pool", pool, 2), ("seed", seed, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise InputError(f"`{name}` must be an integer >= {low}, got {value!r}")
        if not (isinstance(num_replicas, int) and num_replicas >= 1 and isinstance(rank, int) and 0 <= rank):
            raise InputError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")
        if rank >= num_replicas:
            raise InputError(f"rank {rank} is not below num_replicas {num_replicas}")
        self.batch_size, self.pool, self.seed = int(batch_size), int(pool), int(seed)
        self.epoch_source = epoch_source
        self.num_replicas, self.rank = num_replicas, rank
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass (used when there is no ``epoch_source``)."""
        self._epoch = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self.epoch_source.epoch) if self.epoch_source is not None else self._epoch

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every batch of ``epoch`` (default: the current one) across all processes, in the order they run."""
        e = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, e])
        order = rng.permutation(len(self.lengths))
        step = self.pool * self.batch_size
        out: list[list[int]] = []
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            out += [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        if self.num_replicas > 1:
            total = len(self) * self.num_replicas
            batches = (batches * math.ceil(total / len(batches)))[:total]
            batches = batches[self.rank :: self.num_replicas]
        return iter(batches)

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.lengths) / self.batch_size) / self.num_replicas)


class PrefetchBatches:
    """A batch sampler that announces each batch one batch ahead: when batch ``k`` is handed out,
    ``prefetch(batch k + 1)`` is called (a feature store then reads those rows while batch ``k`` trains).
    The batches and their order are those of ``batches``.

    ``sampler``: the case sampler inside ``batches``; when it has ``set_epoch`` (``DistributedSampler``), it
    gets ``epoch_source.epoch`` at the start of each pass, as the training loop would set it on a loader's own
    sampler.
    """

    def __init__(self, batches: Any, prefetch: Any, *, sampler: Any = None, epoch_source: Any = None) -> None:
        self.batches, self.prefetch = batches, prefetch
        self.sampler, self.epoch_source = sampler, epoch_source

    def __iter__(self) -> Iterator[list[int]]:
        if self.epoch_source is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(int(self.epoch_source.epoch))
        it = iter(self.batches)
        nxt = next(it, None)
        if nxt is not None:
            self.prefetch(nxt)
        while nxt is not None:
            cur, nxt = nxt, next(it, None)
            if nxt is not None:
                self.prefetch(nxt)
            yield cur

    def __len__(self) -> int:
        return len(self.batches)


def padding_share(lengths: Sequence[int] | np.ndarray, batches: Sequence[Sequence[int]]) -> float:
    """Share of a pass's padded bag elements that are padding: ``1 - sum(real) / sum(batch size x longest)``."""
    lens = np.asarray(lengths, dtype=np.int64)
    padded = sum(len(b) * int(lens[list(b)].max()) for b in batches if len(b))
    real = sum(int(lens[list(b)].sum()) for b in batches)
    return 0.0 if padded == 0 else 1.0 - real / padded
