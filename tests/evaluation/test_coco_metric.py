"""COCOEvaluator (faster-coco-eval) against the oracle, pycocotools' COCOeval, on written files."""

import json

import numpy as np
import pytest
import torch
from frcnn.evaluation import COCO_STAT_NAMES, METRIC_KEYS, COCOEvaluator, GroundTruthError, write_json
from coco_case import CLASS_NAMES, hand_built_case, hand_built_evaluator, image_ids, pycocotools_eval

@pytest.fixture
def evaluator() -> COCOEvaluator:
    evaluator = hand_built_evaluator(class_metrics=True)
    preds, rows = hand_built_case()
    evaluator.update(preds[:4], image_ids(rows[:4]))  # two updates, as two batches
    evaluator.update(preds[4:], image_ids(rows[4:]))
    return evaluator


def test_equals_pycocotools_on_written_files(evaluator, tmp_path):
    ground_truth = evaluator.coco_ground_truth()
    detections = evaluator.coco_results()
    assert max(len([d for d in detections if d["image_id"] == 802]), 0) == 150
    write_json(ground_truth, tmp_path / "ground_truth.json")
    write_json(detections, tmp_path / "detections.json")
    oracle = pycocotools_eval(tmp_path / "ground_truth.json", tmp_path / "detections.json")

    metrics = evaluator.compute()
    ours = np.array([metrics[key].item() for key in METRIC_KEYS])
    # The case must exercise every number: none undefined, none trivially 0 or 1.
    assert ((oracle.stats > 0) & (oracle.stats < 1)).all(), oracle.stats
    np.testing.assert_allclose(ours, oracle.stats, atol=1e-6, rtol=0)
    summary = evaluator.summary()
    np.testing.assert_allclose(summary.stats, oracle.stats, atol=1e-12, rtol=0)

    precision = oracle.eval["precision"][:, :, :, 0, -1]
    oracle_per_class = [p[p > -1].mean() for p in precision.reshape(-1, precision.shape[-1]).T]
    assert summary.category_ids.tolist() == sorted(oracle.params.catIds) == [1, 3, 7]
    np.testing.assert_allclose(summary.ap_per_category, oracle_per_class, atol=1e-12, rtol=0)
    np.testing.assert_allclose(metrics["map_per_class"].numpy(), oracle_per_class, atol=1e-6, rtol=0)
    assert metrics["classes"].tolist() == [1, 2, 3]
    assert summary.category_names == CLASS_NAMES[1:]
    assert summary.as_dict().keys() == set(COCO_STAT_NAMES)


def test_ground_truth_file_content(evaluator):
    ground_truth = evaluator.coco_ground_truth()
    assert [image["id"] for image in ground_truth["images"]] == [139, 285, 632, 724, 776, 785, 802, 872]
    assert {"id": 724, "height": 300, "width": 400} in ground_truth["images"]
    assert [c["id"] for c in ground_truth["categories"]] == [1, 3, 7]
    assert [c["name"] for c in ground_truth["categories"]] == ["circle", "square", "triangle"]
    annotations = ground_truth["annotations"]
    assert [a["id"] for a in annotations] == list(range(1, len(annotations) + 1))
    x, y, w, h = annotations[0]["bbox"]
    assert annotations[0]["area"] == w * h and annotations[0]["iscrowd"] == 0
    crowd = [a for a in annotations if a["image_id"] == 872]
    assert [a["iscrowd"] for a in crowd] == [0, 1, 0]
    assert crowd[0]["area"] == pytest.approx(0.6 * crowd[0]["bbox"][2] * crowd[0]["bbox"][3], rel=1e-6)
    json.dumps(ground_truth)  # plain python types only


def test_repeated_images_count_once(evaluator):
    """DistributedSampler pads with repeats; a repeated image must not count twice."""
    once = evaluator.compute()
    preds, rows = hand_built_case()
    evaluator.update(preds[-3:], image_ids(rows[-3:]))
    twice = evaluator.compute()
    for key in METRIC_KEYS:
        assert twice[key].item() == once[key].item(), key
    assert len(evaluator.coco_ground_truth()["images"]) == 8


def test_no_detections_gives_zeros():
    _, rows = hand_built_case()
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}]
    evaluator = hand_built_evaluator(class_metrics=True)
    evaluator.update(empty * len(rows), image_ids(rows))
    metrics = evaluator.compute()
    assert all(metrics[key].item() == 0.0 for key in METRIC_KEYS)
    assert metrics["map_per_class"].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_no_ground_truth_and_no_images():
    evaluator = hand_built_evaluator(class_metrics=True)
    assert all(value.item() == -1 for key, value in evaluator.compute().items() if key in METRIC_KEYS)
    preds, rows = hand_built_case()
    evaluator.update(preds[3:5], image_ids(rows[3:5]))  # the empty image and the false positives
    metrics = evaluator.compute()
    assert all(metrics[key].item() == -1 for key in METRIC_KEYS)
    assert metrics["map_per_class"].tolist() == [-1.0, -1.0, -1.0]


def test_only_the_evaluated_images_are_scored(evaluator):
    """Ground truth of images nobody evaluated (val_limit, a skipped corrupt image) is no miss."""
    preds, rows = hand_built_case()
    subset = hand_built_evaluator()
    subset.update(preds[:3], image_ids(rows[:3]))
    ground_truth = subset.coco_ground_truth()
    assert [image["id"] for image in ground_truth["images"]] == image_ids(rows[:3])
    assert {a["image_id"] for a in ground_truth["annotations"]} == set(image_ids(rows[:3]))
    assert len(subset.ground_truth["images"]) == 8, "the full ground truth stays as it was"
    alone = hand_built_evaluator()
    alone.ground_truth = {**alone.ground_truth, "images": alone.ground_truth["images"][:3]}
    alone.ground_truth["annotations"] = [a for a in alone.ground_truth["annotations"] if a["image_id"] in image_ids(rows[:3])]
    alone.update(preds[:3], image_ids(rows[:3]))
    assert subset.compute()["map"].item() == alone.compute()["map"].item()


def test_scoring_leaves_the_ground_truth_untouched(evaluator):
    before = json.dumps(evaluator.ground_truth)
    evaluator.compute()
    evaluator.summary()
    assert json.dumps(evaluator.ground_truth) == before


def test_an_image_outside_the_ground_truth_is_one_clear_error():
    preds, rows = hand_built_case()
    evaluator = hand_built_evaluator()
    evaluator.update(preds[:2], [139, 99999])
    with pytest.raises(GroundTruthError, match=r"^1 of the 2 evaluated images are not in the ground truth \(e.g. image_id 99999\)"):
        evaluator.compute()
    with pytest.raises(GroundTruthError, match="no ground truth"):
        COCOEvaluator().coco_ground_truth()
