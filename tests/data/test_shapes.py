"""`frcnn.data.sources.shapes`: a deterministic, learnable set, generated once by its source."""

import pytest

from frcnn.data.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from frcnn.data.sources.shapes import Shapes, ensure_shapes, make_row

TINY_SHAPES = {"num_train": 6, "num_val": 2, "seed": 0, "train_shards": 2, "val_shards": 1}


def test_shapes_generation_is_deterministic_and_learnable():
    assert make_row(0, "train", 3) == make_row(0, "train", 3)
    rows = [make_row(0, "train", index) for index in range(40)]
    assert any(not row["objects"]["bbox"] for row in rows)
    assert len({(row["width"], row["height"]) for row in rows}) > 30
    sides = [min(x1 - x0, y1 - y0) for row in rows for x0, y0, x1, y1 in row["objects"]["bbox"]]
    assert min(sides) < 16 and max(sides) > 64


def test_the_source_generates_once_and_reads_the_rows_back(tmp_path):
    source = Shapes(tmp_path / "shapes", TINY_SHAPES)
    assert source.folder_to_write() == tmp_path / "shapes"
    source.prepare()
    assert source.folder_to_write() is None
    assert ensure_shapes(tmp_path / "shapes", **TINY_SHAPES) == tmp_path / "shapes"  # reused, not made again
    assert source.categories("train") == (list(COCO_CLASSES), list(COCO_CATEGORY_IDS))
    val = source.open("val")
    assert val.num_rows == 2
    assert val.read_unit(0)[1] == make_row(0, "val", 1)
    with pytest.raises(ValueError, match="holds a shapes set made with .*: delete it or choose another data.path"):
        Shapes(tmp_path / "shapes", {**TINY_SHAPES, "num_val": 3}).prepare()


def test_min_object_side_bounds_the_smallest_objects(tmp_path):
    def smallest(min_object_side):
        rows = [make_row(0, "train", index, min_object_side) for index in range(40)]
        return min(min(x1 - x0, y1 - y0) for row in rows for x0, y0, x1, y1 in row["objects"]["bbox"])

    assert smallest(8) < 8
    assert smallest(16) >= 0.6 * 16 - 1  # sides are drawn from min_object_side, times an aspect of 0.6-1.6
    assert make_row(0, "val", 0) == make_row(0, "val", 0, 8), "the default keeps the set as it was"
    made = ensure_shapes(tmp_path / "big", **TINY_SHAPES, min_object_side=16)
    assert '"min_object_side": 16' in (made / "meta.json").read_text()
    with pytest.raises(ValueError, match="holds a shapes set made with"):
        ensure_shapes(made, **TINY_SHAPES)
