"""coco_ground_truth_from_rows: stored annotations untouched; what cannot be scored is counted and named."""

import json
import math

import pytest

from frcnn.evaluation import GroundTruthError, coco_ground_truth_from_rows, load_ground_truth_json
from frcnn.data.row_checks import row_targets
from frcnn.evaluation.coco_format import xyxy_to_xywh
from frcnn.evaluation.ground_truth import check_same_ids, in_decoded_pixels, left_out_message, restrict_to_images

NAMES, IDS = ["cat", "dog", "kite"], [17, 18, 38]


def row(image_id, boxes=(), categories=(), width=100, height=80, **objects):
    return {
        "image_id": image_id,
        "width": width,
        "height": height,
        "objects": {"bbox_id": list(range(len(boxes))), "bbox": [list(b) for b in boxes], "category": list(categories), **objects},
    }


def test_clean_rows_become_the_coco_dict_untouched():
    rows = [
        row(5, [(0.5, 20.25, 100.0, 60.0), (1, 2, 3, 4)], [2, 0], area=[777.5, 3], iscrowd=[0, 1]),  # up to the border
        row(3),  # empty
        row(9, [(10, 10, 12, 30)], [1]),  # no area, no iscrowd (the Hub schema)
    ]
    ground_truth = coco_ground_truth_from_rows(iter(rows), NAMES, IDS)
    assert ground_truth["images"] == [
        {"id": 5, "width": 100, "height": 80}, {"id": 3, "width": 100, "height": 80}, {"id": 9, "width": 100, "height": 80}
    ]  # fmt: skip
    assert ground_truth["annotations"] == [
        {"id": 1, "image_id": 5, "category_id": 38, "bbox": [0.5, 20.25, 99.5, 39.75], "area": 777.5, "iscrowd": 0},
        {"id": 2, "image_id": 5, "category_id": 17, "bbox": [1.0, 2.0, 2.0, 2.0], "area": 3.0, "iscrowd": 1},
        {"id": 3, "image_id": 9, "category_id": 18, "bbox": [10.0, 10.0, 2.0, 20.0], "area": 40.0, "iscrowd": 0},
    ]
    assert ground_truth["categories"] == [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}, {"id": 38, "name": "kite"}]
    assert left_out_message(ground_truth) is None and ground_truth["info"]["repaired"] == {}
    assert in_decoded_pixels(ground_truth, {5: (80, 100), 3: (80, 100)}) == ground_truth  # sizes as stored
    stored = coco_ground_truth_from_rows([row(1, [(473.07, 10.0, 500.0, 30.0)], [0], width=640, height=480)], NAMES, IDS)
    assert stored["annotations"][0]["bbox"][0] == 473.07  # the stored float, not a float32 copy
    json.dumps(ground_truth, allow_nan=False)  # plain, finite json


def test_boxes_are_repaired_as_the_training_targets():
    """Dropped and rescaled by the same functions as `row_targets`, counted by kind; a box partly
    outside the image stays as stored, in both."""
    rows = [
        row(5, [(-10.5, 20.25, 130.0, 60.0), (1, 2, 3, 4)], [2, 0], area=[777.5, 3], iscrowd=[0, 1]),  # partly outside
        row(9, [(10, 10, 10, 30), (120, 10, 130, 30), (10, 10, 30, 30)], [1, 1, 1], width=100, height=80),
    ]
    ground_truth = coco_ground_truth_from_rows(rows, NAMES, IDS)
    assert [(a["image_id"], a["bbox"], a["area"]) for a in ground_truth["annotations"]] == [
        (5, [-10.5, 20.25, 140.5, 39.75], 777.5), (5, [1.0, 2.0, 2.0, 2.0], 3.0), (9, [10.0, 10.0, 20.0, 20.0], 400.0)
    ]  # fmt: skip
    assert ground_truth["info"]["repaired"] == {"degenerate_box": 1, "box_outside_image": 1}
    for row_ in rows:
        boxes, _, _, counts = row_targets(row_, (80, 100), 4)
        assert set(counts) <= set(ground_truth["info"]["repaired"])
        scored = [a["bbox"] for a in ground_truth["annotations"] if a["image_id"] == row_["image_id"]]
        assert scored == xyxy_to_xywh(boxes.double().numpy()).tolist()  # the training targets, as COCO boxes
    # Image 9 decoded at half its columns' size: boxes and areas follow the pixels.
    halved = in_decoded_pixels(ground_truth, {9: (40, 50)})
    assert {"id": 9, "width": 50, "height": 40} in halved["images"]
    assert [(a["bbox"], a["area"]) for a in halved["annotations"] if a["image_id"] == 9] == [([5.0, 5.0, 10.0, 10.0], 100.0)]
    assert halved["info"]["repaired"]["size_rescaled"] == 1
    assert ground_truth["annotations"][2]["bbox"] == [10.0, 10.0, 20.0, 20.0]  # not changed in place


def test_bad_annotations_are_counted_and_named_never_category_zero():
    nan = math.nan
    rows = [
        row(1, [(0, 0, 10, 10), (0, 0, 5, 5)], [3, 0]),  # category out of range
        row(2, [(0, 0, 10, 10)], [-1]),  # an unknown category id (CocoFolder's -1)
        row(3, [(nan, 0, 10, 10), (0, 0, 10, 10)], [0, 1]),  # non-finite box
        row(4, [(10, 0, 5, 10)], [0]),  # inverted: a degenerate box, dropped as in training
        row(5, [(0, 0, 10, 10)], [0], area=[nan]),  # non-finite area: the box area
        row(6, [(0, 0, 10, 10)], [0, 1]),  # unequal lengths
        row(7, [(0, 0, 10, 10)], [1]),  # a good row
        row(1, [(0, 0, 10, 10)], [0]),  # image 1 again
    ]
    with pytest.warns(UserWarning, match="left out of the metric") as caught:
        ground_truth = coco_ground_truth_from_rows(rows, NAMES, IDS)
    assert len(caught) == 1
    left_out = ground_truth["info"]["left_out"]
    assert left_out["reasons"] == {
        "label_out_of_range": 2, "nonfinite_box": 1, "malformed_objects": 1, "repeated_image": 1,
    }  # fmt: skip
    assert left_out["image_ids"] == [1, 2, 3, 6]
    assert ground_truth["info"]["repaired"] == {"degenerate_box": 1, "unscorable_area": 1}
    assert [(a["image_id"], a["category_id"], a["area"]) for a in ground_truth["annotations"]] == [(5, 17, 100.0), (7, 18, 100.0)]
    assert [image["id"] for image in ground_truth["images"]] == [1, 2, 3, 4, 5, 6, 7]  # every image kept
    message = left_out_message(ground_truth)
    assert "\n" not in message and "label_out_of_range: 2" in message and "image_id 1, 2, 3, 6" in message


def test_restrict_to_images_copies():
    ground_truth = coco_ground_truth_from_rows([row(1, [(0, 0, 4, 4)], [0]), row(2, [(0, 0, 8, 8)], [1])], NAMES, IDS)
    subset = restrict_to_images(ground_truth, [2])
    assert [a["image_id"] for a in subset["annotations"]] == [2] and [i["id"] for i in subset["images"]] == [2]
    subset["annotations"][0]["bbox"][0] = 99
    subset["annotations"][0]["ignore"] = 1
    assert ground_truth["annotations"][1] == {
        "id": 2, "image_id": 2, "category_id": 18, "bbox": [0.0, 0.0, 8.0, 8.0], "area": 64.0, "iscrowd": 0
    }  # fmt: skip
    with pytest.raises(GroundTruthError, match="1 of the 2 evaluated images"):
        restrict_to_images(ground_truth, [2, 3])


def test_gt_json_with_mismatching_ids_is_one_line(tmp_path):
    instances = {
        "images": [{"id": i, "width": 10, "height": 10} for i in (1, 2, 3)],
        "annotations": [],
        "categories": [{"id": c, "name": str(c)} for c in (17, 18, 90)],
    }
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    ground_truth = load_ground_truth_json(tmp_path / "instances.json")
    check_same_ids(ground_truth, [1, 3], [17, 18, 90], "gt_json=x")  # a subset of its images is fine
    with pytest.raises(GroundTruthError) as error:
        check_same_ids(ground_truth, [1, 4, 5], [17, 18, 38, 39], "gt_json=x")
    assert str(error.value) == (
        "gt_json=x does not match the data: 2 of the data's 3 image ids are not among its 3 (e.g. 4); "
        "2 of our 4 category ids are not among its 3 (e.g. 38); 1 of its category ids are not ours (e.g. 90)"
    )
    (tmp_path / "bad.json").write_text("{")
    for path, match in ((tmp_path / "bad.json", "is not a json file"), (tmp_path / "none.json", "does not exist")):
        with pytest.raises(GroundTruthError, match=match):
            load_ground_truth_json(path)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(GroundTruthError, match="needs the lists images, annotations, categories"):
        load_ground_truth_json(tmp_path / "list.json")
