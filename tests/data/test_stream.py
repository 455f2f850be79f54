"""`DetectionStream`: label mapping, empty images in validation, corrupt images, epochs and resume,
and reads limited to a reader's own rows."""

import numpy as np
import pytest
import torch

from frcnn.data.source import DataSourceError, RowSource, open_split
from frcnn.data.stream import DataLayoutError, DetectionStream
from frcnn.data.transforms import DetectionTransform, build_resize

from hub_rows import hub_row, jpeg_bytes


IDENTITY = DetectionTransform(build_resize("none", 0, 0, 0))
TINY_PNG = jpeg_bytes(8, 8, mode="RGBA")  # PNG: lossless and tiny


def make_stream(folder, train: bool = False, **kwargs) -> DetectionStream:
    return DetectionStream(open_split(str(folder), "val"), IDENTITY, num_classes=81, train=train, **kwargs)


def test_category_0_and_79_become_labels_1_and_80(hub_folder):
    rows = [hub_row(1, boxes=[(1.0, 1.0, 9.0, 9.0), (10.0, 10.0, 30.0, 30.0)], categories=[0, 79])]
    (_, target), = list(make_stream(hub_folder(rows)))
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [1, 80]
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (2, 4)
    assert target["image_id"].dtype == torch.int64 and int(target["image_id"]) == 1


def test_empty_image_reaches_validation_but_not_training(hub_folder):
    rows = [hub_row(1), hub_row(2, boxes=[(1.0, 1.0, 9.0, 9.0)], categories=[5]), hub_row(3, boxes=[(4.0, 4.0, 4.5, 9.0)], categories=[5])]
    folder = hub_folder(rows)
    validation = {int(target["image_id"]): target for _, target in make_stream(folder)}
    assert sorted(validation) == [1, 2, 3]
    assert validation[1]["boxes"].shape == (0, 4) and validation[1]["labels"].shape == (0,)
    assert validation[3]["boxes"].shape == (0, 4)  # its only box is under 1 px wide
    training = [int(target["image_id"]) for _, target in make_stream(folder, train=True, batch_size=1)]
    assert training == [2]


def test_grayscale_cmyk_and_rgba_are_decoded_to_rgb(hub_folder):
    rows = [hub_row(k, 20, 10, image=jpeg_bytes(20, 10, mode=mode)) for k, mode in enumerate(["L", "CMYK", "RGBA", "P"], 1)]
    images = [image for image, _ in make_stream(hub_folder(rows))]
    assert [tuple(image.shape) for image in images] == [(3, 10, 20)] * 4
    assert all(image.dtype == torch.uint8 for image in images)


def test_corrupt_image_is_skipped_counted_and_the_epoch_goes_on(hub_folder):
    truncated = jpeg_bytes(64, 48)[:200]
    rows = [hub_row(1), hub_row(2, image=b"not an image"), hub_row(3, image=truncated), hub_row(4)]
    stream = make_stream(hub_folder(rows))
    with pytest.warns(UserWarning, match="image_id=2") as caught:
        seen = [int(target["image_id"]) for _, target in stream]
    assert seen == [1, 4]
    assert stream.decode_problems() == {"undecodable_image": 2}
    assert stream.skip_example("undecodable_image") in (2, 3)
    assert any("image_id=3" in str(warning.message) for warning in caught)


def test_a_bad_training_row_is_replaced_by_the_next_good_one(hub_folder):
    """The reader keeps its share: the bad row's place goes to the next good row of the reader."""
    box = {"boxes": [(1.0, 1.0, 9.0, 9.0)], "categories": [3]}
    rows = [hub_row(1, **box), hub_row(2, image=b"broken", **box), hub_row(3, **box), hub_row(4, image=b"broken", **box)]
    stream = make_stream(hub_folder(rows), train=True, batch_size=1, shuffle_block=1)
    with pytest.warns(UserWarning, match="undecodable_image"):
        seen = [int(target["image_id"]) for _, target in stream]
    assert len(seen) == 4 and set(seen) == {1, 3}
    assert stream.decode_problems() == {"undecodable_image": 2}


def test_bad_annotations_are_found_before_reading_and_left_out_of_training(hub_folder):
    box = (1.0, 1.0, 9.0, 9.0)
    rows = [
        hub_row(1, boxes=[box], categories=[0]),
        hub_row(2, boxes=[box], categories=[80]),  # no such class
        hub_row(3, boxes=[box], categories=[1]),
        hub_row(4, boxes=[box], categories=[79]),
    ]
    rows[2]["objects"]["bbox"] = [[float("nan"), 1.0, 9.0, 9.0]]
    stream = make_stream(hub_folder(rows), train=True, batch_size=1)
    assert stream.annotation_problems == {"label_out_of_range": 1, "nonfinite_box": 1}
    assert stream.skip_example("label_out_of_range") == 2
    assert sorted(int(target["image_id"]) for _, target in stream) == [1, 4]


def test_state_dict_resumes_exactly_mid_epoch(hub_folder, boxed_rows):
    folder = hub_folder(boxed_rows, num_shards=3)
    options = {"train": True, "batch_size": 1, "shuffle_block": 4, "seed": 3, "hflip_prob": 0.5}
    straight = make_stream(folder, **options)
    straight.set_epoch(2)
    expected = [(int(target["image_id"]), target["boxes"]) for _, target in straight]

    first = make_stream(folder, **options)
    first.set_epoch(2)
    iterator = iter(first)
    head = [next(iterator) for _ in range(5)]
    state = first.state_dict()
    assert state == {"epoch": 2, "rows": 5, "world_size": 1, "num_workers": 0}

    resumed = make_stream(folder, **options)
    resumed.set_epoch(2)
    resumed.load_state_dict(state)
    got = [(int(target["image_id"]), target["boxes"]) for _, target in head + list(resumed)]
    assert [image_id for image_id, _ in got] == [image_id for image_id, _ in expected]
    for (_, boxes), (_, expected_boxes) in zip(got, expected):
        torch.testing.assert_close(boxes, expected_boxes)


def test_a_position_from_another_layout_is_refused_in_one_line(hub_folder, boxed_rows):
    stream = make_stream(hub_folder(boxed_rows), train=True)
    with pytest.raises(DataLayoutError, match="2 rank\\(s\\) x 4 worker\\(s\\), this run has 1 x 0") as error:
        stream.load_state_dict({"epoch": 0, "rows": 3, "world_size": 2, "num_workers": 4})
    assert "\n" not in str(error.value)


def test_too_few_training_images_for_the_readers_is_one_line(hub_folder, boxed_rows):
    stream = make_stream(hub_folder(boxed_rows), train=True, batch_size=2)
    with pytest.raises(DataSourceError, match="12 usable training images cannot give each of 8 readers") as error:
        stream.set_layout(rank=0, world_size=2, num_workers=4)
    assert "\n" not in str(error.value) and "data.num_workers" in str(error.value)


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
    stream = DetectionStream(source, IDENTITY, num_classes=81, train=True, batch_size=2, shuffle_block=64)
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


def test_grouped_batches_are_one_orientation_and_resume_exactly(hub_folder, boxed_rows):
    """3 portrait and 9 landscape rows, batches of 2 in blocks of 4: every batch but a block's
    last is of one orientation; a resume after 3 samples continues with the same samples."""
    folder = hub_folder(boxed_rows, num_shards=3)
    options = {"train": True, "batch_size": 2, "shuffle_block": 4, "seed": 3, "hflip_prob": 0.5, "aspect_ratio_grouping": True}
    straight = make_stream(folder, **options)
    straight.set_epoch(1)
    samples = list(straight)
    portrait = [image.shape[-2] > image.shape[-1] for image, _ in samples]
    pairs = list(zip(portrait[0::2], portrait[1::2]))
    mixed = [index for index, (a, b) in enumerate(pairs) if a != b]
    assert len(samples) == 12 and all(index % 2 == 1 for index in mixed)  # only a block's last batch mixes

    first = make_stream(folder, **options)
    first.set_epoch(1)
    iterator = iter(first)
    head = [next(iterator) for _ in range(3)]
    resumed = make_stream(folder, **options)
    resumed.set_epoch(1)
    resumed.load_state_dict(first.state_dict())
    got = [int(target["image_id"]) for _, target in head + list(resumed)]
    assert got == [int(target["image_id"]) for _, target in samples]
