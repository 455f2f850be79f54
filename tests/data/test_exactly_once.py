"""Every image of a split exactly once per epoch across 2 DataLoader workers × 2 simulated ranks."""

from collections import Counter

import pytest
from torch.utils.data import DataLoader

from frcnn.data.collate import collate_detection
from frcnn.data.source import open_split
from frcnn.data.stream import DetectionStream
from frcnn.data.transforms import DetectionTransform, build_resize


def image_ids_seen(folder, *, shuffle: bool, world_size: int = 2, num_workers: int = 2, limit=None, epoch=0) -> list[int]:
    seen = []
    for rank in range(world_size):
        stream = DetectionStream(
            open_split(str(folder), "val"),
            DetectionTransform(build_resize("none", 0, 0, 0)),
            shuffle=shuffle,
            shuffle_buffer=4,
            seed=7,
            limit=limit,
            rank=rank,
            world_size=world_size,
        )
        stream.set_epoch(epoch)
        loader = DataLoader(stream, batch_size=2, num_workers=num_workers, collate_fn=collate_detection)
        seen += [int(target["image_id"]) for _, targets in loader for target in targets]
    return seen


@pytest.mark.parametrize("num_shards", [1, 4, 5])
@pytest.mark.parametrize("shuffle", [False, True])
def test_each_image_once_across_workers_and_ranks(hub_folder, boxed_rows, num_shards, shuffle):
    folder = hub_folder(boxed_rows, num_shards=num_shards)
    seen = image_ids_seen(folder, shuffle=shuffle)
    assert Counter(seen) == Counter(row["image_id"] for row in boxed_rows)


def test_limit_takes_the_first_rows_for_any_layout(hub_folder, boxed_rows):
    folder = hub_folder(boxed_rows, num_shards=4)
    assert sorted(image_ids_seen(folder, shuffle=False, limit=5)) == [1, 2, 3, 4, 5]
    assert sorted(image_ids_seen(folder, shuffle=False, limit=5, world_size=1, num_workers=0)) == [1, 2, 3, 4, 5]


def test_shuffle_is_seeded_and_changes_with_the_epoch(hub_folder, boxed_rows):
    folder = hub_folder(boxed_rows, num_shards=4)
    first = image_ids_seen(folder, shuffle=True, world_size=1, num_workers=0, epoch=0)
    assert first == image_ids_seen(folder, shuffle=True, world_size=1, num_workers=0, epoch=0)
    assert first != image_ids_seen(folder, shuffle=True, world_size=1, num_workers=0, epoch=1)
