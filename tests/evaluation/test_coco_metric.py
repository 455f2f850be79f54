"""COCOEvaluator (faster-coco-eval) against the oracle, pycocotools' COCOeval, on written files."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn.evaluation import COCO_STAT_NAMES, METRIC_KEYS, COCOEvaluator, write_json

CLASS_NAMES = ["background", "circle", "square", "triangle"]
LABEL_TO_CATEGORY_ID = [0, 1, 3, 7]  # non-contiguous ids, as COCO's


def _jitter(gt_boxes: torch.Tensor, generator: torch.Generator, scale: float) -> torch.Tensor:
    sizes = (gt_boxes[:, 2:] - gt_boxes[:, :2]).repeat(1, 2)
    return gt_boxes + scale * sizes * torch.randn(gt_boxes.shape, generator=generator)


def _random_boxes(num_boxes: int, height: int, width: int, side: tuple[float, float], generator) -> torch.Tensor:
    sides = side[0] + (side[1] - side[0]) * torch.rand(num_boxes, 2, generator=generator)
    corners = torch.rand(num_boxes, 2, generator=generator) * (torch.tensor([width, height]) - sides)
    return torch.cat([corners, corners + sides], dim=1)


def _image(image_id, height, width, gt_boxes, gt_labels, pred_boxes, pred_labels, generator, **extra):
    target = {
        "boxes": gt_boxes.float(),
        "labels": torch.as_tensor(gt_labels, dtype=torch.int64),
        "image_id": torch.tensor(image_id),
        "orig_size": torch.tensor([height, width]),
        **extra,
    }
    pred = {
        "boxes": pred_boxes.float(),
        "scores": torch.rand(len(pred_boxes), generator=generator),
        "labels": torch.as_tensor(pred_labels, dtype=torch.int64),
    }
    return pred, target


def hand_built_case() -> tuple[list[dict], list[dict]]:
    """Eight images with the awkward cases named in the docstring of each block."""
    generator = torch.Generator().manual_seed(0)
    preds, targets = [], []

    def add(pred_target):
        preds.append(pred_target[0])
        targets.append(pred_target[1])

    # Ordinary images: small, medium and large boxes of all classes, jittered
    # detections, a few wrong labels and a few false positives.
    for image_id in (139, 285, 632):
        gt_boxes = torch.cat(
            [_random_boxes(3, 480, 640, side, generator) for side in ((8, 30), (35, 90), (100, 400))]
        )
        gt_labels = torch.randint(1, 4, (len(gt_boxes),), generator=generator)
        pred_boxes = torch.cat([_jitter(gt_boxes, generator, 0.08), _random_boxes(4, 480, 640, (10, 200), generator)])
        pred_labels = torch.cat([gt_labels, torch.randint(1, 4, (4,), generator=generator)])
        pred_labels[0] = pred_labels[0] % 3 + 1
        add(_image(image_id, 480, 640, gt_boxes, gt_labels, pred_boxes, pred_labels, generator))
    # An empty image: no ground truth, no detections.
    add(_image(724, 300, 400, torch.zeros(0, 4), [], torch.zeros(0, 4), [], generator))
    # Only false positives.
    add(_image(776, 300, 400, torch.zeros(0, 4), [], _random_boxes(5, 300, 400, (5, 150), generator), [1, 2, 3, 1, 2], generator))
    # Ground truth nobody found.
    add(_image(785, 512, 512, _random_boxes(2, 512, 512, (20, 200), generator), [2, 3], torch.zeros(0, 4), [], generator))
    # 150 detections of one class over 10 boxes: maxDets=100 and AR1/AR10 cut them.
    gt_boxes = _random_boxes(10, 600, 800, (10, 300), generator)
    pred_boxes = torch.cat([_jitter(gt_boxes.repeat(10, 1), generator, 0.15), _random_boxes(50, 600, 800, (5, 300), generator)])
    add(_image(802, 600, 800, gt_boxes, [1] * 10, pred_boxes, [1] * 150, generator))
    # A crowd box (its matches are ignored) and source-given areas (COCO's mask areas).
    gt_boxes = _random_boxes(3, 400, 400, (30, 200), generator)
    extra = {"iscrowd": torch.tensor([0, 1, 0]), "area": (gt_boxes[:, 2:] - gt_boxes[:, :2]).prod(1) * 0.6}
    pred_boxes = torch.cat([_jitter(gt_boxes, generator, 0.05), _random_boxes(2, 400, 400, (30, 200), generator)])
    add(_image(872, 400, 400, gt_boxes, [3, 3, 2], pred_boxes, [3, 3, 2, 3, 1], generator, **extra))
    return preds, targets


def pycocotools_eval(ground_truth_file, detections_file) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(ground_truth_file))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(detections_file)), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


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
