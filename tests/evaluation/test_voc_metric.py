"""VOC AP against cases computed by hand, and against a plain transcription of the devkit's loop."""

import numpy as np
import pytest

from frcnn.evaluation.ground_truth import coco_ground_truth_from_rows
from frcnn.evaluation.voc_metric import Boxes, evaluate_voc, ground_truth_boxes, match_detections, voc_ap
from tests.evaluation.voc_devkit_loop import devkit_ap

CLASSES = ["cat", "dog", "bird"]


def _ground_truth() -> Boxes:
    """Image 1: cat A, cat B (difficult), dog. Image 2: cat C. No bird anywhere."""
    return Boxes(
        image_ids=np.array([1, 1, 1, 2]),
        labels=np.array([1, 1, 2, 1]),
        boxes=np.array([[0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30], [0, 0, 10, 10]], dtype=float),
        ignore=np.array([False, True, False, False]),
    )


def _detections() -> Boxes:
    rows = [  # image, label, box, score, what it is
        (1, 1, [0, 0, 10, 10], 0.9),    # cat A: true positive
        (1, 1, [0, 0, 10, 10], 0.8),    # cat A again: duplicate, false positive
        (1, 1, [20, 0, 30, 10], 0.7),   # cat B, difficult: ignored
        (2, 1, [50, 50, 60, 60], 0.6),  # nothing: false positive
        (2, 1, [0, 0, 10, 10], 0.5),    # cat C: true positive
        (1, 2, [0, 20, 10, 25], 0.95),  # dog, IoU exactly 0.5: true positive (devkit: >=)
        (1, 2, [0, 20, 10, 30], 0.3),   # dog again, box taken: false positive
        (2, 2, [0, 0, 10, 10], 0.2),    # a dog on cat C: false positive (classes never mix)
        (2, 3, [0, 0, 10, 10], 0.4),    # bird: no ground truth
    ]  # fmt: skip
    return Boxes(
        image_ids=np.array([row[0] for row in rows]),
        labels=np.array([row[1] for row in rows]),
        boxes=np.array([row[2] for row in rows], dtype=float),
        scores=np.array([row[3] for row in rows]),
    )


def test_outcomes_by_hand():
    assert match_detections(_detections(), _ground_truth()).tolist() == [1, 0, -1, 0, 1, 1, 0, 0, 0]


def test_ap_by_hand_two_classes_difficult_duplicates_and_a_class_without_ground_truth():
    summary = evaluate_voc(_detections(), _ground_truth(), CLASSES)
    # cat, ignored detection left out: TP FP FP TP of 2 boxes -> recall .5 .5 .5 1, precision 1 .5 1/3 .5.
    # 11 points: t = 0 .. 0.5 reach precision 1, t = 0.6 .. 1 reach 0.5 -> (6 + 5 * 0.5) / 11.
    # Area: recall 0 -> 0.5 at precision 1, 0.5 -> 1 at 0.5 -> 0.75.
    # dog: TP FP FP of 1 box -> both 1. bird: no ground truth -> -1, left out of the means.
    np.testing.assert_allclose(summary.ap07, [8.5 / 11, 1.0, -1.0])
    np.testing.assert_allclose(summary.ap, [0.75, 1.0, -1.0])
    assert summary.num_ground_truth.tolist() == [2, 1, 0]
    assert summary.voc07_map == pytest.approx((8.5 / 11 + 1) / 2)
    assert summary.voc_map == pytest.approx(0.875)


def test_eleven_points_and_area_differ_by_hand():
    recall, precision = np.array([0.25, 0.5, 0.75]), np.array([1.0, 2 / 3, 0.5])
    # 11 points: t=0..0.2 -> 1, t=0.3..0.5 -> 2/3, t=0.6, 0.7 -> 0.5, t=0.8..1 -> 0 (never reached).
    assert voc_ap(recall, precision, True) == pytest.approx((3 + 3 * 2 / 3 + 2 * 0.5) / 11)
    # Area: 0.25 * (1 + 2/3 + 1/2); recall never reaches 1.
    assert voc_ap(recall, precision, False) == pytest.approx(0.25 * (1 + 2 / 3 + 0.5))
    assert voc_ap(np.zeros(0), np.zeros(0), True) == voc_ap(np.zeros(0), np.zeros(0), False) == 0.0


def test_class_with_ground_truth_and_no_detection_scores_zero():
    detections = Boxes(np.array([1]), np.array([1]), np.array([[0.0, 0, 10, 10]]), scores=np.array([0.9]))
    summary = evaluate_voc(detections, _ground_truth(), CLASSES)
    assert summary.ap07[1] == summary.ap[1] == 0.0  # dog: one box, never detected


def test_ground_truth_from_voc_rows_marks_difficult_as_ignored():
    rows = [
        {"image_id": 7, "width": 50, "height": 40, "objects": {"category": [0, 1], "bbox": [[0, 0, 5, 5], [1, 1, 9, 9]], "difficult": [0, 1]}},
    ]
    coco = coco_ground_truth_from_rows(rows, CLASSES, [1, 2, 3])
    assert [a["iscrowd"] for a in coco["annotations"]] == [0, 1]
    boxes = ground_truth_boxes(coco, [0, 1, 2, 3])
    assert boxes.labels.tolist() == [1, 2] and boxes.ignore.tolist() == [False, True]
    np.testing.assert_array_equal(boxes.boxes, [[0, 0, 5, 5], [1, 1, 9, 9]])


def test_equals_the_devkit_loop_on_random_boxes():
    rng = np.random.default_rng(0)
    num_gt, num_det = 300, 2000

    def random_boxes(count):
        corner = rng.integers(0, 80, size=(count, 2)).astype(float)
        return np.concatenate([corner, corner + rng.integers(2, 40, size=(count, 2))], axis=1)

    ground_truth = Boxes(rng.integers(0, 40, num_gt), rng.integers(1, 4, num_gt), random_boxes(num_gt), ignore=rng.random(num_gt) < 0.15)
    # Detections near the ground truth (jittered, so hits, duplicates and misses all occur) and at random.
    near = rng.integers(0, num_gt, num_det // 2)
    jittered = ground_truth.boxes[near] + rng.normal(0, 3, size=(len(near), 4))
    detections = Boxes(
        image_ids=np.concatenate([ground_truth.image_ids[near], rng.integers(0, 40, num_det - len(near))]),
        labels=np.concatenate([ground_truth.labels[near], rng.integers(1, 4, num_det - len(near))]),
        boxes=np.concatenate([jittered, random_boxes(num_det - len(near))]),
        scores=rng.random(num_det).round(2),  # ties: broken by order, as the devkit's stable sort
    )
    summary = evaluate_voc(detections, ground_truth, CLASSES)
    one_based = np.array([1.0, 1.0, 0.0, 0.0])  # what the devkit reads: the xml's boxes, the results files' boxes
    gt = list(zip(ground_truth.image_ids, ground_truth.labels, ground_truth.boxes + one_based, ground_truth.ignore))
    dets = list(zip(detections.image_ids, detections.labels, detections.boxes + one_based, detections.scores))
    expected = np.array([
        devkit_ap([(i, box, hard) for i, l, box, hard in gt if l == label], [(i, box, s) for i, l, box, s in dets if l == label])
        for label in (1, 2, 3)
    ])  # fmt: skip
    np.testing.assert_allclose(summary.ap07, expected[:, 0], rtol=1e-12)
    np.testing.assert_allclose(summary.ap, expected[:, 1], rtol=1e-12)
    assert 0.2 < summary.voc07_map < 0.9  # a case with real hits and misses
