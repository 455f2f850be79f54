"""`DetectionStream`: Hub-schema rows → `(image, target)` samples, each image exactly once per epoch.

Sample contract (boxes `xyxy` in absolute pixels of the image they come with):
    image (Tensor[3, H, W], uint8) RGB after resize (before any padding)
    target: boxes (Tensor[N, 4], float32), labels (Tensor[N], int64) in 1..num_classes-1
            (the row's 0-based `category` + 1; 0 is background), image_id (Tensor[], int64),
            orig_size (Tensor[2], int64) = (H0, W0) of the stored image, size (Tensor[2], int64) = (H, W).
A prediction maps back to the stored image's pixels with x * W0 / W and y * H0 / H.

Exactly once: DataLoader worker `w` of `num_workers` on rank `r` of `world_size` is global reader
`r * num_workers + w` of `G = world_size * num_workers`. With at least `G` shards every reader gets
whole shards (`IterableDataset.shard`); with fewer it reads all rows in the same seeded order and
keeps one in `G` (`split_dataset_by_node`'s "examples" strategy). Never a duplicate.
"""

import warnings
from itertools import islice
from typing import Any, Iterator

import datasets
import numpy as np
import torch
import torch.distributed as dist
from datasets.distributed import split_dataset_by_node
from torch.utils.data import IterableDataset, get_worker_info

from frcnn.data.decode import decode_rgb
from frcnn.data.row_checks import BadRow, row_targets
from frcnn.data.source import set_read_retries
from frcnn.data.transforms import DetectionTransform

Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]

_MAX_WORKERS = 256  # slots of the shared corrupt-image counter, one per DataLoader worker id
_ROWS_PER_READ = 16


class DetectionStream(IterableDataset):
    """Decode, filter and transform a stream of Hub-schema rows, split across workers and ranks.

    Args:
        rows: undecoded rows (`frcnn.data.source.open_split`).
        transform: clip / drop / resize (`DetectionTransform`).
        shuffle: shuffle shard order and rows through a buffer of `shuffle_buffer` rows, from
            `seed` and the epoch (`set_epoch`). Off for validation: a fixed order.
        hflip_prob: probability of a horizontal flip, drawn per image from (seed, epoch, image_id).
        skip_empty: drop images left without boxes (training); validation keeps them.
        limit: only the first `limit` rows of the split (read in stride, so it is the same set
            for any number of workers and ranks).
        rank, world_size: this process's place among the DDP processes; None reads
            `torch.distributed` when the iteration starts (tests pass them to simulate ranks).
        read_retries, retry_interval_s: `datasets` streaming retries for transient read errors.
        num_classes: classes including background; a row with a label outside 1..num_classes-1 is skipped.

    The epoch and the corrupt-image count live in shared memory, so `set_epoch` reaches
    persistent DataLoader workers and `num_corrupt` sums what all workers skipped.
    `state_dict()`/`load_state_dict()` report and restore this reader's position (epoch, rows
    read); inside `torchdata`'s `StatefulDataLoader` each worker's copy reports its own.
    """

    def __init__(
        self,
        rows: datasets.IterableDataset,
        transform: DetectionTransform,
        *,
        shuffle: bool,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        hflip_prob: float = 0.0,
        skip_empty: bool = False,
        limit: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        read_retries: int = 20,
        retry_interval_s: float = 5.0,
        num_classes: int = 81,
    ) -> None:
        self.rows = rows
        self.num_classes = num_classes
        self.transform = transform
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.hflip_prob = hflip_prob
        self.skip_empty = skip_empty
        self.limit = limit
        self.rank = rank
        self.world_size = world_size
        self.read_retries = read_retries
        self.retry_interval_s = retry_interval_s
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._corrupt = torch.zeros(_MAX_WORKERS, dtype=torch.int64).share_memory_()
        self._position = {"epoch": 0, "rows_read": 0}
        self._resume: dict[str, int] | None = None

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (training) and reseed the flips; call before each epoch's iteration."""
        self._epoch.fill_(epoch)

    @property
    def num_corrupt(self) -> int:
        """Images skipped as corrupt so far, across all workers."""
        return int(self._corrupt.sum())

    def state_dict(self) -> dict[str, int]:
        """This reader's position: `{"epoch", "rows_read"}` (rows read in this epoch, skipped ones included)."""
        return dict(self._position)

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume after `state["rows_read"]` rows at the next iteration of epoch `state["epoch"]`."""
        self._resume = dict(state)
        self._position = dict(state)

    def _reader(self) -> tuple[int, int]:
        """(global reader index, number of readers) for this worker of this rank."""
        rank, world_size = self.rank, self.world_size
        if world_size is None:
            distributed = dist.is_available() and dist.is_initialized()
            rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        return rank * num_workers + worker_id, world_size * num_workers

    def _rows_for(self, reader: int, num_readers: int, epoch: int) -> tuple[datasets.IterableDataset, bool]:
        """This reader's rows for `epoch`, and whether they are strided (one row in `num_readers`)."""
        strided = self.limit is not None or self.rows.num_shards < num_readers
        if strided:
            rows = split_dataset_by_node(self.rows, rank=reader, world_size=num_readers, strategy="examples")
        else:
            rows = self.rows.shard(num_shards=num_readers, index=reader, contiguous=False)
        if self.shuffle:
            # One shard feeds the buffer at a time: interleaving shards uses threads that make
            # `datasets` sleep 5 s at the end of every parquet iteration (apache/arrow#45214).
            rows = rows.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer, max_buffer_input_shards=1)
            rows.set_epoch(epoch)
        return rows, strided

    def __iter__(self) -> Iterator[Sample]:
        set_read_retries(self.read_retries, self.retry_interval_s)
        reader, num_readers = self._reader()
        epoch = self.epoch
        rows, strided = self._rows_for(reader, num_readers, epoch)
        skip = self._resume["rows_read"] if self._resume and self._resume["epoch"] == epoch else 0
        self._resume = None
        self._position = {"epoch": epoch, "rows_read": skip}
        row_iter = islice(_unbatch(rows.iter(batch_size=_ROWS_PER_READ)), skip, None)
        if self.limit is not None:
            # Reader k's i-th row is row i * num_readers + k of the split.
            row_iter = islice(row_iter, max(0, -(-(self.limit - reader) // num_readers) - skip))
        worker = get_worker_info()
        slot = (worker.id if worker is not None else 0) % _MAX_WORKERS
        for row in row_iter:
            self._position["rows_read"] += 1
            sample = self._sample(row, epoch, slot)
            if sample is not None:
                yield sample

    def _sample(self, row: dict[str, Any], epoch: int, slot: int) -> Sample | None:
        """Decode and transform one row; None for a corrupt image or, if `skip_empty`, no boxes."""
        image_id = int(row["image_id"])
        try:
            image = decode_rgb(row["image"])
            gt_boxes, gt_labels, iscrowd, _ = row_targets(row, image.shape[-2:], self.num_classes)
        except BadRow as error:
            self._corrupt[slot] += 1
            warnings.warn(f"skipping image_id={image_id}: {error}", stacklevel=2)
            return None
        gt_boxes, gt_labels = gt_boxes[~iscrowd], gt_labels[~iscrowd]
        flip = self.hflip_prob > 0 and np.random.default_rng([self.seed, epoch, image_id]).random() < self.hflip_prob
        orig_size = image.shape[-2:]
        image, gt_boxes, gt_labels = self.transform(image, gt_boxes, gt_labels, flip)
        if self.skip_empty and len(gt_boxes) == 0:
            return None
        target = {
            "boxes": gt_boxes,
            "labels": gt_labels,
            "image_id": torch.tensor(image_id, dtype=torch.int64),
            "orig_size": torch.tensor(orig_size, dtype=torch.int64),
            "size": torch.tensor(image.shape[-2:], dtype=torch.int64),
        }
        return image, target


def _unbatch(batches: Iterator[dict[str, list]]) -> Iterator[dict[str, Any]]:
    """Rows of `IterableDataset.iter` batches (which, unlike `iter(ds)`, does not re-split by worker)."""
    for batch in batches:
        columns = list(batch)
        for values in zip(*(batch[column] for column in columns)):
            yield dict(zip(columns, values))
