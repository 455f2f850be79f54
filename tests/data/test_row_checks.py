"""`row_targets` and `decode_rgb` classify every planted row of a parquet split by kind."""

from __future__ import annotations

import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from frcnn.data import row_checks as kinds
from frcnn.data.decode import decode_rgb
from frcnn.data.row_checks import BadRow, check_annotations, row_targets
from tests.data.bad_rows import planted_rows, sixteen_bit_png, write_bad_split

NUM_CLASSES = 81


def _check(row: dict) -> tuple[str | None, dict[str, int], tuple]:
    """(skip kind or None, counts, (image, boxes, labels, iscrowd)) of one row, as a stream would."""
    try:
        image = decode_rgb(row["image"])
        boxes, labels, iscrowd, counts = row_targets(row, image.shape[-2:], NUM_CLASSES)
    except BadRow as bad:
        return bad.kind, {}, ()
    return None, counts, (image, boxes, labels, iscrowd)


def test_planted_parquet_rows_are_classified_by_kind(tmp_path):
    rows, expected = planted_rows()
    write_bad_split(tmp_path, "train", rows)
    read_back = pq.read_table(tmp_path / "train" / "000.parquet").to_pylist()
    assert len(read_back) == len(rows)
    found = {row["image_id"]: _check(row)[:2] for row in read_back}
    assert found == expected
    assert {skip for skip, _ in expected.values()} >= set(kinds.ROW_SKIP_KINDS)
    assert {kind for _, counts in expected.values() for kind in counts} == set(kinds.ROW_COUNT_KINDS)


def test_kept_rows_targets(tmp_path):
    rows, expected = planted_rows()
    by_id = {row["image_id"]: row for row in rows}
    for image_id, (skip, counts) in expected.items():
        if skip:
            continue
        image, boxes, labels, iscrowd = _check(by_id[image_id])[2]
        assert boxes.dtype == torch.float32 and labels.dtype == torch.int64 and iscrowd.dtype == torch.bool
        # Every planted kept row keeps exactly one box, category 2 -> label 3, in the 64 x 48 pixels.
        torch.testing.assert_close(boxes, torch.tensor([[4.0, 6.0, 40.0, 30.0]]))
        assert labels.tolist() == [3] and iscrowd.tolist() == [False]


def test_sixteen_bit_row_keeps_its_linear_scale():
    encoded, values = sixteen_bit_png()
    image = decode_rgb(encoded)
    expected = np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert torch.equal(image[1], torch.from_numpy(expected))


def test_clipping_and_iscrowd_pass_through():
    row = {
        "width": 64,
        "height": 48,
        "objects": {"bbox": [[-5.0, -5.0, 10.0, 10.0], [60.0, 40.0, 100.0, 100.0]], "category": [0, 79], "iscrowd": [0, 1]},
    }
    boxes, labels, iscrowd, counts = row_targets(row, (48, 64), NUM_CLASSES)
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 10.0, 10.0], [60.0, 40.0, 64.0, 48.0]]))
    assert labels.tolist() == [1, 80] and iscrowd.tolist() == [False, True] and counts == {}


def test_difficult_objects_are_left_out_of_training_like_crowds():
    """VOC's `objects.difficult`: flagged with the crowds (the stream trains on neither)."""
    objects = {"bbox": [[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 30.0, 30.0], [1.0, 1.0, 9.0, 9.0]], "category": [0, 1, 2]}
    row = {"width": 64, "height": 48, "objects": {**objects, "iscrowd": [1, 0, 0], "difficult": [0, 1, 0]}}
    assert row_targets(row, (48, 64), NUM_CLASSES)[2].tolist() == [True, True, False]
    assert kinds.has_trainable_box(row)
    assert not kinds.has_trainable_box({**row, "objects": {**row["objects"], "difficult": [0, 1, 1]}})
    with pytest.raises(BadRow, match=re.escape("objects has 3 boxes, 3 categories and 2 difficult flags")):
        row_targets({**row, "objects": {**objects, "difficult": [0, 1]}}, (48, 64), NUM_CLASSES)


def test_empty_objects_and_null_size_columns():
    row = {"width": None, "height": None, "objects": {"bbox": [], "category": []}}
    boxes, labels, iscrowd, counts = row_targets(row, (48, 64), NUM_CLASSES)
    assert boxes.shape == (0, 4) and labels.shape == (0,) and iscrowd.shape == (0,) and counts == {}


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ({"category": [1]}, "objects has no 'bbox' field"),
        ({"bbox": [[1, 2, 3]], "category": [1]}, "objects.bbox has shape [1, 3], not [N, 4]"),
        ({"bbox": [[1, 2, 30, 40]], "category": ["cat"]}, "null or non-numeric"),
        ([{"bbox": [1, 2, 30, 40], "category": 1}], "objects is a list, not a struct of lists"),
    ],
)
def test_malformed_objects_say_what_is_wrong(objects, message):
    with pytest.raises(BadRow, match=re.escape(message)) as caught:
        row_targets({"width": 64, "height": 48, "objects": objects}, (48, 64), NUM_CLASSES)
    assert caught.value.kind == kinds.MALFORMED_OBJECTS


def test_check_annotations_needs_no_image():
    rows, expected = planted_rows()
    for row in rows:
        skip = expected[row["image_id"]][0]
        if skip in kinds.ANNOTATION_KINDS:
            with pytest.raises(BadRow) as caught:
                check_annotations(row, NUM_CLASSES)
            assert caught.value.kind == skip
        else:
            check_annotations(row, NUM_CLASSES)


def test_label_range_follows_num_classes():
    row = {"width": 64, "height": 48, "objects": {"bbox": [[1.0, 1.0, 9.0, 9.0]], "category": [1]}}
    assert row_targets(row, (48, 64), 3)[1].tolist() == [2]
    with pytest.raises(BadRow, match=r"objects.category 1 is outside 0..0"):
        row_targets(row, (48, 64), 2)


def test_rescale_tolerates_rounded_sides():
    # 640 x 427 annotated, stored at half size: 320 x 214 (427 / 2 rounded up).
    row = {"width": 640, "height": 427, "objects": {"bbox": [[100.0, 50.0, 300.0, 250.0]], "category": [0]}}
    boxes, _, _, counts = row_targets(row, (214, 320), NUM_CLASSES)
    torch.testing.assert_close(boxes, torch.tensor([[50.0, 50.0 * 214 / 427, 150.0, 250.0 * 214 / 427]]))
    assert counts == {kinds.SIZE_RESCALED: 1}


def test_size_columns_that_are_not_numbers():
    row = {"width": float("nan"), "height": 48, "objects": {"bbox": [], "category": []}}
    with pytest.raises(BadRow, match="not whole numbers") as caught:
        row_targets(row, (48, 64), NUM_CLASSES)
    assert caught.value.kind == kinds.SIZE_MISMATCH
