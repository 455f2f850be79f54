"""Box geometry: flip by hand, resize then map back against the parquet rows."""

import pytest
import torch

from frcnn.data.source import open_split
from frcnn.data.stream import DetectionStream
from frcnn.data.transforms import DetectionTransform, build_resize


def test_flip_moves_boxes_and_pixels():
    image = torch.zeros(3, 40, 100, dtype=torch.uint8)
    image[:, 20:40, 10:30] = 255
    transform = DetectionTransform(build_resize("none", 0, 0, 0))
    flipped, boxes, labels = transform(image, torch.tensor([[10.0, 20.0, 30.0, 40.0]]), torch.tensor([3]), flip=True)
    # x' = W - x: [10, 30] → [70, 90]
    torch.testing.assert_close(boxes, torch.tensor([[70.0, 20.0, 90.0, 40.0]]))
    assert flipped[:, 20:40, 70:90].eq(255).all() and flipped.sum() == image.sum()
    assert labels.tolist() == [3]


def test_boxes_partly_outside_are_resized_and_flipped_as_stored():
    # Not clipped (as torchvision's detection transform): the metric scores the stored box.
    transform = DetectionTransform(build_resize("keep_ratio", 20, 200, 0))
    boxes = torch.tensor([[-5.0, -5.0, 20.0, 20.0], [90.0, 5.0, 120.0, 30.0]])
    _, moved, labels = transform(torch.zeros(3, 40, 100, dtype=torch.uint8), boxes, torch.tensor([1, 3]), flip=True)
    # x 0.5 (40 -> 20 rows), then x' = 50 - x.
    torch.testing.assert_close(moved, torch.tensor([[40.0, -2.5, 52.5, 10.0], [-10.0, 2.5, 5.0, 15.0]]))
    assert labels.tolist() == [1, 3]


@pytest.mark.parametrize(("mode", "min_size", "max_size"), [("keep_ratio", 50, 70), ("keep_ratio", 90, 1000), ("square", 0, 0)])
def test_resize_then_map_back_matches_the_rows(hub_folder, boxed_rows, mode, min_size, max_size):
    stream = DetectionStream(
        open_split(str(hub_folder(boxed_rows, num_shards=2)), "val"),
        DetectionTransform(build_resize(mode, min_size, max_size, 64)),
        num_classes=81,
        train=False,
    )
    rows = {row["image_id"]: row for row in boxed_rows}
    for image, target in stream:
        row = rows[int(target["image_id"])]
        height, width = target["size"].tolist()
        assert image.dtype == torch.uint8 and image.shape == (3, height, width)
        assert target["orig_size"].tolist() == [row["height"], row["width"]]
        if mode == "keep_ratio":
            assert min(height, width) == min_size or max(height, width) == max_size
        scale = (target["orig_size"] / target["size"]).flip(0).repeat(2)  # (W0/W, H0/H, W0/W, H0/H)
        torch.testing.assert_close(target["boxes"] * scale, torch.tensor(row["objects"]["bbox"]), atol=0.5, rtol=0)
