"""`DetectionStream`: a split's rows → `(image, target)` samples, dealt evenly to every reader.

Samples: `frcnn.data.samples` turns a row into `(image, target)` (the sample contract is there).

Readers: DataLoader worker `w` of `W` on rank `r` of `R` is reader `r·W + w` of `G = R·W`
(`W = 1` without workers). The rank, world size and worker count are fixed in the main process
by `set_layout` before any worker starts, so any start method (fork, spawn, forkserver) gives
the same split. `frcnn.data.partition` decides which rows each reader reads: the same number of
full batches for every training reader, every validation row exactly once.

Bad rows: annotations are checked when the stream is built (every row, no image read); a
training row with a bad annotation or no valid box is left out of the plan, and counted. An image
that fails later (undecodable, no box left after clipping) is counted and, in training, replaced by
the reader's next good row (or its previous one at the end of its share), so that no reader ever
falls short of its share; in validation it is skipped. Counts per kind live in shared memory
(`frcnn.data.row_counts`; `decode_problems`), summed over workers.

Resume: `state_dict()`/`load_state_dict()` give and restore this reader's position (epoch, rows
consumed, layout); `torchdata`'s `StatefulDataLoader` keeps one per worker. Resuming reads only the
units still needed, so the time to the first batch does not grow with the position in the epoch.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from frcnn.data.decode import DEFAULT_MAX_PIXELS
from frcnn.data.partition import TrainingPlan, validation_rows
from frcnn.data.row_checks import ANNOTATION_KINDS, annotation_problem, has_trainable_box
from frcnn.data.row_counts import MAX_WORKERS, RowCounts
from frcnn.data.samples import Sample, SampleMaker
from frcnn.data.source import DataSourceError, Row, RowSource
from frcnn.data.transforms import DetectionTransform
from frcnn.data.unit_reader import UnitReader


class DataLayoutError(DataSourceError):
    """A saved data position that does not fit this run's ranks × workers."""


class DetectionStream(IterableDataset):
    """Decode, check and transform the rows of one split, dealt to ranks × workers.

    Args:
        source: the split's rows (`frcnn.data.source`).
        transform, num_classes, seed, hflip_prob, skip_empty, max_pixels: how a row becomes a
            sample (`frcnn.data.samples.SampleMaker`; `skip_empty` applies to training only).
        train: training (usable rows only, shuffled, equal shares, replacements) or validation
            (every row once, stored order, empty images kept).
        batch_size: training shares are whole batches of this size.
        shuffle_block: rows shuffled together inside a reader's share (training); also bounds
            how many rows a resume reads before its first batch.
        limit: validation reads only the first `limit` rows (the same set for any layout).
        aspect_ratio_grouping: training batches hold landscape or portrait images only, where
            the reader's rows allow (`frcnn.data.partition.group_batches`): less padding.
    """

    def __init__(
        self,
        source: RowSource,
        transform: DetectionTransform,
        *,
        num_classes: int,
        train: bool,
        batch_size: int = 2,
        shuffle_block: int = 1000,
        seed: int = 0,
        hflip_prob: float = 0.0,
        skip_empty: bool = True,
        limit: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        aspect_ratio_grouping: bool = False,
    ) -> None:
        self.source = source
        self.make_sample = SampleMaker(
            transform, num_classes=num_classes, seed=seed, hflip_prob=hflip_prob,
            skip_empty=train and skip_empty, max_pixels=max_pixels,
        )  # fmt: skip
        self.train = train
        self.batch_size = batch_size
        self.shuffle_block = max(1, shuffle_block)
        self.seed = seed
        self.rank, self.world_size, self.num_workers = 0, 1, 0
        annotations = source.annotations()
        kinds = [annotation_problem(row, num_classes) for row in annotations]
        image_ids = [int(row["image_id"]) for row in annotations]
        self.num_rows = len(annotations) if limit is None else min(limit, len(annotations))
        # Problems found before any image is read: (kind → count, kind → an example image_id).
        self.annotation_problems = Counter(kind for kind in kinds[: self.num_rows] if kind is not None)
        self.annotation_problems.update({kind: count for kind, count in source.problems.items() if count})
        self.problem_examples = {kind: image_ids[i] for i, kind in enumerate(kinds[: self.num_rows]) if kind}
        if train:
            usable = np.array([kind is None and (has_trainable_box(row) or not skip_empty) for row, kind in zip(annotations, kinds)], dtype=bool)
            groups = np.array([_is_portrait(row) for row in annotations], dtype=np.int64) if aspect_ratio_grouping else None
            self.plan = TrainingPlan(source.unit_starts, usable, seed, groups)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.counts = RowCounts()
        self._position: dict[str, int] = {"epoch": 0, "rows": 0}
        self._resume: dict[str, int] | None = None

    # ------------------------------------------------------------------ layout

    def set_layout(self, rank: int, world_size: int, num_workers: int) -> None:
        """Fix this process's place (rank of world_size) and its DataLoader's worker count."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        if self.train and self.plan.rows_per_reader(self.num_readers, self.batch_size) == 0:
            raise DataSourceError(
                f"{self.source.description}: {self.plan.num_usable} usable training images cannot give each of "
                f"{self.num_readers} readers ({world_size} rank(s) x {self.readers_per_rank} worker(s)) a batch of "
                f"{self.batch_size}: lower data.num_workers or data.batch_size"
            )

    @property
    def readers_per_rank(self) -> int:
        return max(1, self.num_workers)

    @property
    def num_readers(self) -> int:
        return self.world_size * self.readers_per_rank

    def num_batches(self) -> int:
        """Training batches this rank yields per epoch: the same on every rank."""
        if not self.train:
            raise TypeError("a validation stream's length depends on skipped rows")
        return self.readers_per_rank * self.plan.rows_per_reader(self.num_readers, self.batch_size) // self.batch_size

    def _reader(self) -> int:
        """This worker's global reader index; checks the DataLoader has the announced workers."""
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 0)
        if num_workers != self.num_workers:
            raise RuntimeError(f"the stream was laid out for {self.num_workers} workers but runs in {num_workers}")
        return self.rank * self.readers_per_rank + worker_id

    def rows_of(self, reader: int, epoch: int) -> np.ndarray:
        """(ndarray[K]) the global rows `reader` reads in `epoch`, in reading order."""
        if self.train:
            return self.plan.reader_rows(epoch, reader, self.num_readers, self.batch_size, self.shuffle_block)
        return validation_rows(self.num_rows, reader, self.num_readers)

    # ------------------------------------------------------------ epoch, state

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select `epoch`'s rows and flips; call before the epoch's iteration (Lightning does)."""
        self._epoch.fill_(epoch)

    def reset_decode_problems(self) -> None:
        """Start counting anew (each validation pass reads its rows again)."""
        self.counts.reset()

    def decode_problems(self) -> dict[str, int]:
        """What this process's workers counted so far, by kind (`annotation_problems` holds what
        was found before reading, the same on every rank)."""
        return self.counts.totals()

    def problem_counts(self) -> dict[str, int]:
        """This process's view of everything counted: `annotation_problems` plus `decode_problems()`."""
        return dict(Counter(self.annotation_problems) + Counter(self.decode_problems()))

    def skip_example(self, kind: str) -> int | None:
        """An image_id skipped for `kind`, if any."""
        if kind in self.problem_examples:
            return self.problem_examples[kind]
        return self.counts.example(kind)  # None for a source's own problems (named in its warning)

    @property
    def rows_read(self) -> int:
        """Rows the workers have tried to decode so far."""
        return self.counts.rows_read

    def state_dict(self) -> dict[str, int]:
        """This reader's position: epoch, rows consumed in it, and the layout it was taken in."""
        return {**self._position, "world_size": self.world_size, "num_workers": self.num_workers}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after `state["rows"]` rows of epoch `state["epoch"]` at the next iteration."""
        saved = (state.get("world_size", 1), state.get("num_workers", 0))
        if saved != (self.world_size, self.num_workers):
            raise DataLayoutError(
                f"the checkpoint's data position is for {saved[0]} rank(s) x {saved[1]} worker(s), this run has "
                f"{self.world_size} x {self.num_workers}: resume with the same trainer.devices x trainer.num_nodes "
                f"and data.num_workers, or start a new run from its weights"
            )
        self._resume = {"epoch": state["epoch"], "rows": state["rows"]}
        self._position = dict(self._resume)

    # --------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[Sample]:
        worker = get_worker_info()
        yield from self.samples_of(self._reader(), slot=(worker.id if worker is not None else 0) % MAX_WORKERS)

    def samples_of(self, reader: int, slot: int = 0) -> Iterator[Sample]:
        """Reader `reader`'s samples of the current epoch, from the resumed position if any
        (`__iter__` calls it with this worker's reader; tests call it to simulate any reader)."""
        epoch = self.epoch
        order = self.rows_of(reader, epoch)
        start = self._resume["rows"] if self._resume and self._resume["epoch"] == epoch else 0
        self._resume = None
        self._position = {"epoch": epoch, "rows": start}
        units = UnitReader(self.source, order)
        position = start
        while position < len(order):
            sample = self._try(units, order, position, epoch, slot)
            if sample is not None or not self.train:
                position += 1
                self._position["rows"] = position
                if sample is not None:
                    yield sample
                continue
            # A training row that failed: its place goes to the next good row of this reader.
            found, replacement = self._replacement(units, order, position, epoch, slot, reader)
            for _ in range(position, found + 1):
                position += 1
                self._position["rows"] = position
                yield replacement

    def _replacement(
        self, units: UnitReader, order: np.ndarray, position: int, epoch: int, slot: int, reader: int
    ) -> tuple[int, Sample]:
        """(last position it fills, sample): the next good row after `position`, else the previous one."""
        for ahead in range(position + 1, len(order)):
            sample = self._try(units, order, ahead, epoch, slot)
            if sample is not None:
                return ahead, sample
        for behind in range(position - 1, -1, -1):
            sample = self._try(units, order, behind, epoch, slot, count=False)
            if sample is not None:
                return len(order) - 1, sample
        raise DataSourceError(
            f"{self.source.description}: no row of training reader {reader} can be decoded; see the warnings above"
        )

    def _try(self, units: UnitReader, order: np.ndarray, position: int, epoch: int, slot: int, count: bool = True) -> Sample | None:
        """The sample at `position` of `order`, or None (counted and warned) for a bad row."""
        row = units.row(position)
        if count:
            self.counts.read(slot)
        problem, sample, counts = self.make_sample(row, epoch)
        if not count:
            return sample
        for counted, number in counts.items():
            self.counts.add(slot, counted, number)
        if problem is not None and problem.kind not in ANNOTATION_KINDS:  # those were counted before reading
            self.counts.add(slot, problem.kind, image_id=int(row["image_id"]))
            warnings.warn(f"skipping image_id={row['image_id']}: {problem} ({self.source.description})", stacklevel=2)
        return sample


def _is_portrait(row: Row) -> bool:
    """Whether a row's stored image is taller than wide (`width`/`height` columns; unknown: no)."""
    try:
        return int(row["height"]) > int(row["width"])
    except (TypeError, ValueError):
        return False
