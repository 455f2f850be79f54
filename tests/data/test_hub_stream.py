"""Stream contents: label mapping, empty images in validation, corrupt images, epochs and resume."""

import pytest
import torch

from frcnn.data.source import open_split
from frcnn.data.stream import DetectionStream
from frcnn.data.transforms import DetectionTransform, build_resize

from hub_rows import hub_row, jpeg_bytes


def make_stream(folder, **kwargs) -> DetectionStream:
    options = {"shuffle": False} | kwargs
    return DetectionStream(open_split(str(folder), "val"), DetectionTransform(build_resize("none", 0, 0, 0)), **options)


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
    training = [int(target["image_id"]) for _, target in make_stream(folder, shuffle=True, skip_empty=True)]
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
    assert stream.num_corrupt == 2
    assert any("image_id=3" in str(warning.message) for warning in caught)


def test_state_dict_resumes_exactly_mid_epoch(hub_folder, boxed_rows):
    folder = hub_folder(boxed_rows, num_shards=3)
    straight = make_stream(folder, shuffle=True, shuffle_buffer=4, seed=3, hflip_prob=0.5)
    straight.set_epoch(2)
    expected = [(int(target["image_id"]), target["boxes"]) for _, target in straight]

    first = make_stream(folder, shuffle=True, shuffle_buffer=4, seed=3, hflip_prob=0.5)
    first.set_epoch(2)
    iterator = iter(first)
    head = [next(iterator) for _ in range(5)]
    state = first.state_dict()
    assert state == {"epoch": 2, "rows_read": 5}

    resumed = make_stream(folder, shuffle=True, shuffle_buffer=4, seed=3, hflip_prob=0.5)
    resumed.set_epoch(2)
    resumed.load_state_dict(state)
    got = [(int(target["image_id"]), target["boxes"]) for _, target in head + list(resumed)]
    assert [image_id for image_id, _ in got] == [image_id for image_id, _ in expected]
    for (_, boxes), (_, expected_boxes) in zip(got, expected):
        torch.testing.assert_close(boxes, expected_boxes)
