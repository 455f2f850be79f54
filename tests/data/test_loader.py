"""`StreamLoader`: rows dealt to ranks × workers — equal training shares, validation exactly once,
the same split under every worker start method."""

from collections import Counter

import pytest

from frcnn.data.loader import StreamLoader
from frcnn.data.source import open_split
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


def test_grouped_training_gives_every_rank_the_same_rows_as_ungrouped(hub_folder):
    """24 rows, a third portrait, 2 ranks x 2 workers, batch 2: each rank reads 12 rows, the same
    ones as without grouping (test_stream checks the batches' orientations)."""
    rows = [hub_row(i, 40, 56 if i % 3 == 0 else 32, boxes=[(2.0, 3.0, 20.0, 25.0)], categories=[1]) for i in range(1, 25)]
    source = open_split(str(hub_folder(rows, num_shards=3)), "val")
    grouped = ids_per_rank(make_stream(source, train=True, shuffle_block=4, aspect_ratio_grouping=True), 2, 2)
    plain = ids_per_rank(make_stream(source, train=True, shuffle_block=4), 2, 2)
    assert [len(ids) for ids in grouped] == [12, 12]
    assert [sorted(ids) for ids in grouped] == [sorted(ids) for ids in plain]
