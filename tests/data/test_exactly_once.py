"""How rows are dealt to readers (ranks × workers): equal training shares, validation exactly once,
the same split under every worker start method, and reads limited to a reader's own rows."""

from collections import Counter

import numpy as np
import pytest

from frcnn.data.loader import StreamLoader
from frcnn.data.partition import TrainingPlan, validation_rows
from frcnn.data.source import RowSource, open_split
from frcnn.data.stream import DetectionStream
from frcnn.data.transforms import DetectionTransform, build_resize

from hub_rows import hub_row, jpeg_bytes

IDENTITY = DetectionTransform(build_resize("none", 0, 0, 0))
TINY_PNG = jpeg_bytes(8, 8, mode="RGBA")  # PNG: lossless and tiny


def make_stream(source, *, train: bool, batch_size: int = 2, **kwargs) -> DetectionStream:
    return DetectionStream(source, IDENTITY, num_classes=81, train=train, batch_size=batch_size, **kwargs)


def ids_per_rank(stream, world_size, num_workers, context=None, epoch=0) -> list[list[int]]:
    """Image ids each rank's DataLoader yields for `epoch` (ranks simulated in one process)."""
    seen = []
    for rank in range(world_size):
        stream.set_epoch(epoch)
        loader = StreamLoader(stream, 2, rank, world_size, num_workers=num_workers, multiprocessing_context=context)
        seen.append([int(target["image_id"]) for _, targets in loader for target in targets])
    return seen


@pytest.mark.parametrize("num_shards", [1, 4, 5])
def test_validation_reads_every_row_once_across_workers_and_ranks(hub_folder, boxed_rows, num_shards):
    stream = make_stream(open_split(str(hub_folder(boxed_rows, num_shards=num_shards)), "val"), train=False)
    seen = ids_per_rank(stream, world_size=2, num_workers=2)
    assert Counter(sum(seen, [])) == Counter(row["image_id"] for row in boxed_rows)


def test_validation_limit_takes_the_first_rows_for_any_layout(hub_folder, boxed_rows):
    source = open_split(str(hub_folder(boxed_rows, num_shards=4)), "val")
    assert sorted(sum(ids_per_rank(make_stream(source, train=False, limit=5), 2, 2), [])) == [1, 2, 3, 4, 5]
    assert sorted(sum(ids_per_rank(make_stream(source, train=False, limit=5), 1, 0), [])) == [1, 2, 3, 4, 5]


def unequal_split(hub_folder, sizes: list[int], empty_every: int = 0) -> tuple:
    """A val split of `len(sizes)` parquet shards of the given sizes; every `empty_every`-th row has no box."""
    rows, image_id = [], 1
    for _ in range(sum(sizes)):
        empty = empty_every and image_id % empty_every == 0
        boxes = [] if empty else [(1.0, 1.0, 7.0, 7.0)]
        rows.append(hub_row(image_id, 8, 8, boxes=boxes, categories=[] if empty else [1], image=TINY_PNG))
        image_id += 1
    folder = hub_folder(rows, num_shards=len(sizes))
    return folder, rows



@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_training_shares_are_equal_under_every_start_method(hub_folder, context):
    """2 ranks x 2 workers, 5 shards of unequal sizes, some empty rows: the same number of batches on
    both ranks, every usable image at most once, and the same split whatever starts the workers."""
    folder, rows = unequal_split(hub_folder, [3, 9, 4, 7, 5], empty_every=7)
    stream = make_stream(open_split(str(folder), "val"), train=True, shuffle_block=4, seed=3)
    seen = ids_per_rank(stream, world_size=2, num_workers=2, context=context)
    usable = {row["image_id"] for row in rows if row["objects"]["bbox"]}
    assert len(usable) == 24 and len(seen[0]) == len(seen[1]) == 12  # 24 usable rows / (4 readers x 2) = 3 batches each
    assert Counter(sum(seen, [])) == Counter(usable)
    if context != "fork":
        assert seen == ids_per_rank(stream, world_size=2, num_workers=2, context="fork")
    validation = make_stream(open_split(str(folder), "val"), train=False)
    assert sorted(sum(ids_per_rank(validation, world_size=2, num_workers=2, context=context), [])) == list(range(1, 29))


def test_training_windows_carry_the_remainder_so_counts_differ_by_at_most_one():
    """27 usable rows, 4 readers, batch 2: 24 rows an epoch; after every epoch each row was read
    floor or ceil(24 e / 27) times."""
    starts = np.array([0, 5, 13, 20, 27, 30])
    usable = np.ones(30, dtype=bool)
    usable[[2, 14, 29]] = False
    plan = TrainingPlan(starts, usable, seed=5)
    counts = Counter()
    for epoch in range(7):
        epoch_rows = [plan.reader_rows(epoch, reader, 4, 2, shuffle_block=3) for reader in range(4)]
        assert {len(rows) for rows in epoch_rows} == {6}
        assert len(set(np.concatenate(epoch_rows).tolist())) == 24  # no row twice in an epoch
        counts.update(np.concatenate(epoch_rows).tolist())
        assert set(counts) <= set(np.flatnonzero(usable).tolist())
        values = [counts[row] for row in np.flatnonzero(usable).tolist()]
        assert max(values) - min(values) <= 1


def test_validation_shares_cover_the_split_once():
    shares = [validation_rows(10, reader, 4) for reader in range(4)]
    assert [len(share) for share in shares] == [2, 3, 2, 3]
    assert np.concatenate(shares).tolist() == list(range(10))
    assert [len(validation_rows(3, reader, 8)) for reader in range(8)].count(0) == 5  # readers with no row


class CountingSource(RowSource):
    """40 shards of unequal sizes cut in row groups of 25 rows; counts the rows each unit read returns."""

    def __init__(self, shard_sizes: list[int], rows_per_group: int = 25) -> None:
        self.description, self.revision = "simulated", None
        sizes = [size for shard in shard_sizes for size in [rows_per_group] * (shard // rows_per_group) + [shard % rows_per_group] if size]
        self.unit_sizes = np.asarray(sizes, dtype=np.int64)
        self.rows_returned = 0

    def _row(self, index: int, with_image: bool) -> dict:
        row = hub_row(index + 1, 8, 8, boxes=[(1.0, 1.0, 7.0, 7.0)], categories=[3], image=TINY_PNG)
        return row if with_image else {key: value for key, value in row.items() if key != "image"}

    def read_unit(self, unit: int) -> list[dict]:
        start, end = self.unit_starts[unit], self.unit_starts[unit + 1]
        self.rows_returned += int(end - start)
        return [self._row(index, True) for index in range(start, end)]

    def annotations(self) -> list[dict]:
        return [self._row(index, False) for index in range(self.num_rows)]


def test_simulated_8_ranks_x_4_workers_over_40_unequal_shards():
    """Each of the 32 readers gets the same number of rows, every row is read once, and a reader
    reads about 1/32 of the split, not the whole of it."""
    shard_sizes = [40 + (7 * shard) % 45 for shard in range(40)]  # 40 to 84 rows
    source = CountingSource(shard_sizes)
    stream = make_stream(source, train=True, batch_size=2, shuffle_block=64)
    stream.set_layout(rank=0, world_size=8, num_workers=4)
    per_reader, read_per_reader = [], []
    for reader in range(32):
        source.rows_returned = 0
        per_reader.append([int(target["image_id"]) for _, target in stream.samples_of(reader)])
        read_per_reader.append(source.rows_returned)
    share = len(per_reader[0])
    assert {len(ids) for ids in per_reader} == {share} and share == 2 * (source.num_rows // 64)
    assert len(set(sum(per_reader, []))) == 32 * share > source.num_rows - 64  # each row once; < 64 carried over
    assert max(read_per_reader) <= share + 2 * 25  # its share plus the two row groups at its ends
    print(f"rows {source.num_rows}, share {share}, rows read per reader {min(read_per_reader)}..{max(read_per_reader)}")
