"""Pascal VOC box AP: the VOC2007 devkit's 11-point mAP and the area under the curve of VOC2010+.

Shorthand: D = detections, G = ground-truth boxes, K = classes (labels 1..K; 0 = background).

Matching is the devkit's (``VOCevaldet.m``; Detectron2's ``voc_eval``): a class's detections,
in descending score over all images, each take the ground-truth box of their image and class
with the highest IoU (the first such box on a tie); at IoU >= 0.5 the detection is ignored when
that box is difficult, a true positive when the box is not yet taken by a higher-scored
detection, a false positive otherwise; below 0.5 it is a false positive. A detection's best box
does not depend on which boxes are taken, so the matching is vectorised: per box, the first
detection in score order that chose it is the true positive. (Detectron2 and py-faster-rcnn
test ``IoU > 0.5``; the devkit ``>=``: they differ only at exactly 0.5.)

Boxes are ``xyxy`` in the stored image's pixels, VOC's 1-based inclusive boxes shifted by
``x1 - 1, y1 - 1`` (``frcnn.data.sources.voc``): the plain IoU of such boxes equals the devkit's
``+ 1`` IoU of the 1-based boxes, and of the results files' boxes (x1 + 1, y1 + 1).

Difficult boxes reach the metric as the COCO ground truth's ``iscrowd`` annotations
(``frcnn.evaluation.ground_truth`` marks them so): not counted in recall, and a detection that
matches one is ignored. A class without a non-difficult box in the evaluated images has AP -1
and is left out of the mean, as COCO's per-class AP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from frcnn.evaluation.coco_format import LabelToCategoryId, category_ids_for

IOU_THRESHOLD = 0.5
# The devkit's recall thresholds 0:0.1:1, computed as it does (0.30000000000000004, ...) so that
# `recall >= t` decides the same way at the boundaries.
VOC07_RECALL_THRESHOLDS = np.arange(0.0, 1.1, 0.1)


@dataclass
class Boxes:
    """Boxes of a split, one row each: ``image_ids`` (ndarray[N]), ``labels`` (ndarray[N],
    1..K), ``boxes`` (ndarray[N, 4] xyxy); ``scores`` (ndarray[N]) for detections, ``ignore``
    (ndarray[N] bool: difficult) for ground truth."""

    image_ids: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray | None = None
    ignore: np.ndarray | None = None


@dataclass
class VOCSummary:
    """Per-class AP (ndarray[K], -1 for a class without ground truth) by both rules, and the
    non-difficult ground-truth boxes per class (ndarray[K])."""

    class_names: list[str]
    ap07: np.ndarray
    ap: np.ndarray
    num_ground_truth: np.ndarray

    @property
    def voc07_map(self) -> float:
        return _mean_defined(self.ap07)

    @property
    def voc_map(self) -> float:
        return _mean_defined(self.ap)


def _mean_defined(ap: np.ndarray) -> float:
    defined = ap >= 0
    return float(ap[defined].mean()) if defined.any() else -1.0


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP of one class from its precision/recall points (ndarray[P] each, recall non-decreasing).

    ``use_07_metric``: the mean over t = 0, 0.1, ..., 1 of the best precision at recall >= t
    (VOC2007); else the area under the precision envelope (VOC2010+, ``VOCap.m``).
    """
    if use_07_metric:
        if recall.size == 0:
            return 0.0
        best_from = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at index >= i
        first = np.searchsorted(recall, VOC07_RECALL_THRESHOLDS, side="left")  # first recall >= t
        reached = first < recall.size
        return float(np.where(reached, best_from[np.minimum(first, recall.size - 1)], 0.0).mean())
    recall = np.concatenate([[0.0], recall, [1.0]])
    envelope = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * envelope[steps]))


def match_detections(detections: Boxes, ground_truth: Boxes, iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """(ndarray[D] int8) each detection's outcome: 1 true positive, 0 false positive, -1 ignored
    (matched a difficult box). See the module docstring for the rule."""
    num_detections = len(detections.labels)
    # One group per (image, class): detections pair with the ground truth of their own group.
    _, inverse = np.unique(np.concatenate([ground_truth.image_ids, detections.image_ids]), return_inverse=True)
    num_classes = int(max(ground_truth.labels.max(initial=0), detections.labels.max(initial=0))) + 1
    gt_group = inverse[: len(ground_truth.labels)] * num_classes + ground_truth.labels
    det_group = inverse[len(ground_truth.labels) :] * num_classes + detections.labels
    gt_order = np.argsort(gt_group, kind="stable")  # the file's order inside a group: ties go to the first
    start = np.searchsorted(gt_group[gt_order], det_group, side="left")
    count = np.searchsorted(gt_group[gt_order], det_group, side="right") - start
    pair_det = np.repeat(np.arange(num_detections), count)
    offset = np.arange(len(pair_det)) - np.repeat(np.cumsum(count) - count, count)
    pair_gt = gt_order[np.repeat(start, count) + offset]
    iou = _paired_iou(detections.boxes[pair_det], ground_truth.boxes[pair_gt])

    best_iou = np.full(num_detections, -1.0)
    np.maximum.at(best_iou, pair_det, iou)
    first_best = np.flatnonzero(iou == best_iou[pair_det])
    matched, first = np.unique(pair_det[first_best], return_index=True)
    best_gt = np.full(num_detections, -1)
    best_gt[matched] = pair_gt[first_best[first]]

    outcome = np.zeros(num_detections, dtype=np.int8)
    hit = best_iou >= iou_threshold
    ignored = np.zeros(num_detections, dtype=bool)
    ignored[hit] = ground_truth.ignore[best_gt[hit]]
    outcome[ignored] = -1
    # Among the detections that hit a box, the first in score order takes it.
    rank_order = np.argsort(-detections.scores, kind="stable")
    candidates = rank_order[(hit & ~ignored)[rank_order]]
    _, first_per_box = np.unique(best_gt[candidates], return_index=True)
    outcome[candidates[first_per_box]] = 1
    return outcome


def _paired_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of row i of ``boxes_a`` with row i of ``boxes_b`` (ndarray[P, 4] xyxy each) -> ndarray[P]."""
    sides = np.clip(np.minimum(boxes_a[:, 2:], boxes_b[:, 2:]) - np.maximum(boxes_a[:, :2], boxes_b[:, :2]), 0, None)
    inter = sides.prod(axis=1)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).prod(axis=1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).prod(axis=1)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def evaluate_voc(detections: Boxes, ground_truth: Boxes, class_names: list[str]) -> VOCSummary:
    """VOC AP per class (labels 1..K, ``class_names[k - 1]``) of ``detections`` against
    ``ground_truth``, both of the same images."""
    outcome = match_detections(detections, ground_truth)
    order = np.argsort(-detections.scores, kind="stable")
    order = order[outcome[order] >= 0]  # an ignored detection moves neither recall nor precision
    num_classes = len(class_names)
    ap07, ap = -np.ones(num_classes), -np.ones(num_classes)
    num_ground_truth = np.bincount(ground_truth.labels[~ground_truth.ignore], minlength=num_classes + 1)[1:]
    for index in np.flatnonzero(num_ground_truth):
        ranked = outcome[order[detections.labels[order] == index + 1]]
        true_positives = np.cumsum(ranked == 1)
        recall = true_positives / num_ground_truth[index]
        precision = true_positives / np.arange(1, len(ranked) + 1)
        ap07[index], ap[index] = voc_ap(recall, precision, True), voc_ap(recall, precision, False)
    return VOCSummary(list(class_names), ap07, ap, num_ground_truth)


def ground_truth_boxes(ground_truth: Mapping[str, Any], label_to_category_id: LabelToCategoryId) -> Boxes:
    """The annotations of a COCO instances dict (``frcnn.evaluation.ground_truth``) as ``Boxes``
    with labels; ``iscrowd`` (VOC's difficult) as ``ignore``."""
    annotations = ground_truth["annotations"]
    labels = _labels_of(np.array([a["category_id"] for a in annotations], dtype=np.int64), label_to_category_id)
    return Boxes(
        image_ids=np.array([a["image_id"] for a in annotations], dtype=np.int64),
        labels=labels,
        boxes=_xyxy([a["bbox"] for a in annotations]),
        ignore=np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool),
    )


def result_boxes(results: list[Mapping[str, Any]], label_to_category_id: LabelToCategoryId) -> Boxes:
    """A COCO results list (``frcnn.evaluation.coco_format.coco_results``) as ``Boxes`` with labels."""
    return Boxes(
        image_ids=np.array([r["image_id"] for r in results], dtype=np.int64),
        labels=_labels_of(np.array([r["category_id"] for r in results], dtype=np.int64), label_to_category_id),
        boxes=_xyxy([r["bbox"] for r in results]),
        scores=np.array([r["score"] for r in results], dtype=np.float64),
    )


def _xyxy(xywh: list) -> np.ndarray:
    """COCO's [x, y, w, h] boxes (N of them) as ndarray[N, 4] xyxy."""
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def _labels_of(category_ids: np.ndarray, label_to_category_id: LabelToCategoryId) -> np.ndarray:
    """Inverse of ``label_to_category_id`` (index 0, background, excluded) on an int array."""
    if label_to_category_id is None:
        return category_ids
    mapping = label_to_category_id
    labels = np.arange(1, max(mapping) + 1 if isinstance(mapping, Mapping) else len(mapping))
    known = category_ids_for(labels, label_to_category_id)
    order = np.argsort(known)
    return labels[order][np.searchsorted(known[order], category_ids)]
