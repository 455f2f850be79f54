"""Which rows each reader reads in an epoch: equal shares in training, every row once in validation.

Shorthand: G readers (DataLoader workers of all ranks: reader = rank * W + worker, with W = max(1,
num_workers)), B batch size, N usable training rows, U units (parquet row groups), L val rows.

Training (`TrainingPlan`): the global sequence S is an endless concatenation of passes; pass p
lists the usable rows unit by unit, the units in a random order seeded by (seed, p). Epoch e is
the window S[e·G·M, (e+1)·G·M) with M = B·⌊N / (G·B)⌋ rows per reader, and reader r reads the
window's r-th contiguous share, so it touches ≈ M / rows-per-unit units, never the whole split.
Inside its share a reader reads blocks of `shuffle_block` rows, each block in a random order
seeded by (seed, e, r, block). With aspect-ratio groups (torchvision's `GroupedBatchSampler`,
Detectron2's `AspectRatioGroupedDataset`), each block is then re-dealt into batches of one group
(landscape or portrait) in the order the batches fill up; the rows a block leaves over (fewer
than B per group) make its last batches, mixed. A block is a whole number of batches then, so
the grouping never changes which rows a reader reads, only their order. Every reader has exactly M rows (M / B full batches) in every
epoch, so every rank runs the same number of steps; the N − G·M (< G·B) rows a window leaves
open are the next window's first, so after any number of epochs the times two usable rows were
read differ by at most one.

Validation (`validation_rows`): rows [0, L) in stored order; reader r reads
[⌊r·L/G⌋, ⌊(r+1)·L/G⌋): each row exactly once, no padding (shares differ by at most one row).
"""

from __future__ import annotations

import numpy as np


class TrainingPlan:
    """The training rows of every (epoch, reader), from the split's units and usable rows.

    Args:
        unit_starts (ndarray[U + 1]): global index of each unit's first row, then the row count.
        usable (ndarray[R], bool): rows that can train (at least one valid box, no bad annotation).
        seed: the shuffle seed.
        groups (ndarray[R], int, optional): an aspect-ratio group per row; when given, every batch
            a block allows holds rows of one group.
    """

    def __init__(self, unit_starts: np.ndarray, usable: np.ndarray, seed: int, groups: np.ndarray | None = None) -> None:
        self.unit_starts = np.asarray(unit_starts, dtype=np.int64)
        self.usable = np.asarray(usable, dtype=bool)
        self.seed = seed
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)
        self.num_usable = int(self.usable.sum())
        self._passes: dict[int, np.ndarray] = {}

    def rows_per_reader(self, num_readers: int, batch_size: int) -> int:
        """M: the rows each reader reads per epoch, a multiple of `batch_size` (0 if too few rows)."""
        return batch_size * (self.num_usable // (num_readers * batch_size))

    def pass_order(self, pass_index: int, window: int) -> np.ndarray:
        """(ndarray[N]) the usable rows of pass `pass_index` when epochs take `window` rows.

        Units in a seeded random order, rows in unit order; the rows of the previous pass that the
        epoch straddling the two passes takes from the previous one go last, so that epoch never
        takes a row twice."""
        key = (window, pass_index)
        if key not in self._passes:
            num_units = len(self.unit_starts) - 1
            units = np.random.default_rng([self.seed, pass_index]).permutation(num_units)
            starts, ends = self.unit_starts[units], self.unit_starts[units + 1]
            rows = np.concatenate([np.arange(start, end) for start, end in zip(starts, ends)] or [np.zeros(0, np.int64)])
            rows = rows[self.usable[rows]]
            if pass_index > 0:
                taken = (pass_index * self.num_usable) % window  # rows the straddling epoch took from the previous pass
                if taken:
                    tail = self.pass_order(pass_index - 1, window)[-taken:]
                    rows = np.concatenate([rows[~np.isin(rows, tail)], tail])
            self._passes = {k: v for k, v in self._passes.items() if k[0] == window and k[1] >= pass_index - 1}
            self._passes[key] = rows
        return self._passes[key]

    def reader_rows(self, epoch: int, reader: int, num_readers: int, batch_size: int, shuffle_block: int) -> np.ndarray:
        """(ndarray[M]) the global rows reader `reader` of `num_readers` reads in `epoch`, in order."""
        per_reader = self.rows_per_reader(num_readers, batch_size)
        first = (epoch * num_readers + reader) * per_reader
        positions = np.arange(first, first + per_reader)
        passes = positions // max(self.num_usable, 1)
        rows = np.empty(per_reader, dtype=np.int64)
        for pass_index in np.unique(passes):
            in_pass = passes == pass_index
            rows[in_pass] = self.pass_order(int(pass_index), num_readers * per_reader)[positions[in_pass] % self.num_usable]
        if self.groups is not None:  # whole batches per block, so that a block's batches can be one group each
            shuffle_block = max(1, round(shuffle_block / batch_size)) * batch_size
        for block, start in enumerate(range(0, per_reader, shuffle_block)):
            order = np.random.default_rng([self.seed, epoch, reader, block]).permutation(min(shuffle_block, per_reader - start))
            rows[start : start + len(order)] = rows[start + order]
            if self.groups is not None:
                rows[start : start + len(order)] = group_batches(rows[start : start + len(order)], self.groups, batch_size)
        return rows


def group_batches(rows: np.ndarray, groups: np.ndarray, batch_size: int) -> np.ndarray:
    """(ndarray[K]) `rows` reordered into batches of `batch_size` rows of one group each.

    As torchvision's `GroupedBatchSampler`: rows are taken in order, each into its group's
    batch, and a batch is emitted when it fills; the rows left over when `rows` ends (fewer than
    `batch_size` per group) follow in their order, making the mixed batches at the end.

    Args:
        rows (ndarray[K]): global row indices in reading order.
        groups (ndarray[R]): the group of every row of the split.
    """
    row_groups = groups[rows]
    batches, completions, leftovers = [], [], []
    for group in np.unique(row_groups):
        members = np.flatnonzero(row_groups == group)  # positions in `rows`, in order
        full = len(members) // batch_size * batch_size
        batches.append(members[:full].reshape(-1, batch_size))
        completions.append(members[batch_size - 1 : full : batch_size])  # when each batch filled
        leftovers.append(members[full:])
    full_batches = np.concatenate(batches)[np.argsort(np.concatenate(completions), kind="stable")]
    positions = np.concatenate([full_batches.reshape(-1), np.sort(np.concatenate(leftovers))])
    return rows[positions]


def validation_rows(num_rows: int, reader: int, num_readers: int) -> np.ndarray:
    """(ndarray[≈ num_rows / num_readers]) reader `reader`'s contiguous share of rows [0, num_rows)."""
    return np.arange(reader * num_rows // num_readers, (reader + 1) * num_rows // num_readers, dtype=np.int64)
