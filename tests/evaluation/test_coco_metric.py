"""COCOEvaluator (faster-coco-eval) against the oracle, pycocotools' COCOeval, on written files."""

import json

import numpy as np
import pytest
import torch
from frcnn.evaluation import COCO_STAT_NAMES, METRIC_KEYS, COCOEvaluator, write_json
from coco_case import CLASS_NAMES, LABEL_TO_CATEGORY_ID, hand_built_case, pycocotools_eval

@pytest.fixture
def evaluator() -> COCOEvaluator:
    evaluator = COCOEvaluator(class_names=CLASS_NAMES, label_to_category_id=LABEL_TO_CATEGORY_ID, class_metrics=True)
    preds, targets = hand_built_case()
    evaluator.update(preds[:4], targets[:4])  # two updates, as two batches
    evaluator.update(preds[4:], targets[4:])
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
    preds, targets = hand_built_case()
    evaluator.update(preds[-3:], targets[-3:])
    twice = evaluator.compute()
    for key in METRIC_KEYS:
        assert twice[key].item() == once[key].item(), key
    assert len(evaluator.coco_ground_truth()["images"]) == 8


def test_no_detections_gives_zeros():
    _, targets = hand_built_case()
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}]
    evaluator = COCOEvaluator(class_names=CLASS_NAMES, class_metrics=True)
    evaluator.update(empty * len(targets), targets)
    metrics = evaluator.compute()
    assert all(metrics[key].item() == 0.0 for key in METRIC_KEYS)
    assert metrics["map_per_class"].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_no_ground_truth_and_no_images():
    evaluator = COCOEvaluator(class_names=CLASS_NAMES, class_metrics=True)
    assert all(value.item() == -1 for key, value in evaluator.compute().items() if key in METRIC_KEYS)
    preds, targets = hand_built_case()
    evaluator.update(preds[3:5], targets[3:5])  # the empty image and the false positives
    metrics = evaluator.compute()
    assert all(metrics[key].item() == -1 for key in METRIC_KEYS)
    assert metrics["map_per_class"].tolist() == [-1.0, -1.0, -1.0]


def test_without_class_names_categories_are_the_labels_seen():
    preds, targets = hand_built_case()
    evaluator = COCOEvaluator()
    evaluator.update(preds, targets)
    assert [c["id"] for c in evaluator.coco_ground_truth()["categories"]] == [1, 2, 3]
    assert {d["category_id"] for d in evaluator.coco_results()} == {1, 2, 3}
