"""COCO box mAP: a torchmetrics ``Metric`` over the faster-coco-eval backend.

Shorthand: B = images in one update, I = images evaluated, K = detections, N = ground-truth
boxes, C = number of classes including background (label 0).

Boxes are ``xyxy`` absolute pixels of the ORIGINAL image (map them back from the resized
input before ``update``); labels are contiguous 1..C-1. The metric stores rows, turns them
into COCO dicts with :mod:`frcnn.evaluation.coco_format` and runs ``COCOeval_faster``, whose
numbers equal pycocotools' ``COCOeval`` (tests/evaluation/test_coco_metric.py checks it).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster
from torch import Tensor
from torchmetrics import Metric

from frcnn.evaluation.coco_format import LabelToCategoryId, coco_ground_truth, coco_results

# pycocotools' ``COCOeval.stats`` in order, under their usual names ...
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# ... and under torchmetrics' ``MeanAveragePrecision`` names (what the training app logs).
METRIC_KEYS = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip

_IMAGE_COLUMNS = 5  # image_id, orig height, orig width, number of detections, number of gt boxes
_PRED_COLUMNS = 6  # x1, y1, x2, y2, score, label
_GT_COLUMNS = 7  # x1, y1, x2, y2, label, iscrowd, area (NaN: box area)

logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)


@dataclass
class COCOSummary:
    """The outcome of one COCO evaluation.

    Attributes:
        stats (ndarray[12]): pycocotools' ``COCOeval.stats``, named by ``COCO_STAT_NAMES``;
            -1 where undefined (no ground truth in that area range).
        category_ids (ndarray[Kc]): the evaluated categories, ascending.
        category_names (list[str]): their names.
        ap_per_category (ndarray[Kc]): AP@[.5:.95], all areas, 100 dets; -1 for a
            category without ground truth.
    """

    stats: np.ndarray
    category_ids: np.ndarray
    category_names: list[str]
    ap_per_category: np.ndarray

    def as_dict(self) -> dict[str, float]:
        """The 12 numbers under ``COCO_STAT_NAMES``."""
        return dict(zip(COCO_STAT_NAMES, self.stats.tolist()))


def evaluate_coco(ground_truth: dict[str, Any], results: list[dict[str, Any]], copy_inputs: bool = True) -> COCOSummary:
    """Run COCO box evaluation (faster-coco-eval) of ``results`` against ``ground_truth``.

    Both are taken as built by :mod:`frcnn.evaluation.coco_format`. The backend annotates
    the dicts it indexes (``ignore``, ``area``, ``segmentation``), so with ``copy_inputs``
    it gets copies; pass False for dicts built for this call only.
    """
    categories = sorted(ground_truth["categories"], key=lambda category: category["id"])
    category_ids = np.array([category["id"] for category in categories], dtype=np.int64)
    category_names = [category["name"] for category in categories]
    num_categories = len(categories)
    if not ground_truth["images"] or not categories:
        return COCOSummary(-np.ones(12), category_ids, category_names, -np.ones(num_categories))
    if copy_inputs:
        ground_truth = copy.deepcopy(ground_truth)
        results = [dict(result, bbox=list(result["bbox"])) for result in results]
    coco_gt = COCO(ground_truth)
    coco_dt = coco_gt.loadRes(results)
    coco_eval = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=lambda *_: None)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    # precision: [iou thresholds, recall thresholds, categories, area ranges, max dets]
    assert list(coco_eval.params.catIds) == category_ids.tolist()
    precision = coco_eval.eval["precision"][:, :, :, 0, -1].reshape(-1, num_categories)
    defined = precision > -1
    ap_sums = np.where(defined, precision, 0.0).sum(axis=0)
    ap_counts = defined.sum(axis=0)
    ap_per_category = np.where(ap_counts > 0, ap_sums / np.maximum(ap_counts, 1), -1.0)
    return COCOSummary(
        stats=np.asarray(coco_eval.stats[:12], dtype=np.float64),
        category_ids=category_ids,
        category_names=category_names,
        ap_per_category=ap_per_category,
    )


def _cat_state(state: list[Tensor] | Tensor, num_columns: int) -> np.ndarray:
    """A ``cat`` state, synced (one tensor) or not (a list), as a float64 (rows, columns) array."""
    if isinstance(state, list):
        state = torch.cat(state) if state else torch.zeros(0, num_columns, dtype=torch.float64)
    return state.detach().cpu().reshape(-1, num_columns).numpy()


class COCOEvaluator(Metric):
    """COCO box mAP of a detector, equal to pycocotools, usable in Lightning and in scripts.

    Example::

        evaluator = COCOEvaluator(class_names=dm.class_names, label_to_category_id=dm.label_to_category_id)
        evaluator.update(preds, targets)  # per batch, boxes in original-image pixels
        metrics = evaluator.compute()     # {"map": tensor(0.37), "map_50": ..., "mar_100": ...}

    Args:
        class_names: index = label, ``class_names[0]`` is background. Gives every class a
            COCO category (with its name), so per-class AP covers all classes.
        label_to_category_id: label -> dataset category id (sequence indexed by label, or
            mapping), the identity when omitted. Used for ``image_id``/``category_id`` in
            the COCO dicts and files.
        class_metrics: ``compute`` also returns ``map_per_class`` and ``classes``.

    ``update(preds, targets)``: one dict per image.
        preds: ``boxes`` (Tensor[K, 4]) xyxy, ``scores`` (Tensor[K]), ``labels`` (Tensor[K]).
        targets: ``boxes`` (Tensor[N, 4]) xyxy, ``labels`` (Tensor[N]), ``image_id`` (int or
        0-dim Tensor), ``orig_size`` (Tensor[2]: H0, W0); optional ``iscrowd`` (Tensor[N])
        and ``area`` (Tensor[N]) when the source has them.

    An image seen twice (DistributedSampler pads the last batch with repeats) counts once.
    States are row tensors with ``cat`` reduction, so DDP sync works with any number of
    updates per rank.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    image_rows: list[Tensor]
    pred_rows: list[Tensor]
    gt_rows: list[Tensor]

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        label_to_category_id: LabelToCategoryId = None,
        class_metrics: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.class_names = list(class_names) if class_names is not None else None
        self.label_to_category_id = label_to_category_id
        self.class_metrics = class_metrics
        self.add_state("image_rows", default=[], dist_reduce_fx="cat")
        self.add_state("pred_rows", default=[], dist_reduce_fx="cat")
        self.add_state("gt_rows", default=[], dist_reduce_fx="cat")

    @property
    def dtype(self) -> torch.dtype:
        """float64, the rows' dtype: a rank that evaluated no image sends torchmetrics' empty
        1-D tensor of this dtype, which must match the other ranks' flat rows in a DDP gather
        (torchmetrics resets its own `_dtype` to float32 whenever the module is moved)."""
        return torch.float64

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        as_f64 = dict(dtype=torch.float64, device=self.device)
        for pred, target in zip(preds, targets):
            pred_boxes, gt_boxes = pred["boxes"].reshape(-1, 4), target["boxes"].reshape(-1, 4)
            num_preds, num_gts = len(pred_boxes), len(gt_boxes)
            image_id = torch.as_tensor(target["image_id"], **as_f64).reshape(1)
            sizes = torch.as_tensor(target["orig_size"], **as_f64).reshape(2)
            counts = torch.tensor([num_preds, num_gts], **as_f64)
            self.image_rows.append(torch.cat([image_id, sizes, counts]))

            self.pred_rows.append(
                torch.cat(
                    [
                        pred_boxes.to(**as_f64),
                        pred["scores"].reshape(num_preds, 1).to(**as_f64),
                        pred["labels"].reshape(num_preds, 1).to(**as_f64),
                    ],
                    dim=1,
                ).reshape(-1)
            )
            iscrowd = target.get("iscrowd")
            area = target.get("area")
            self.gt_rows.append(
                torch.cat(
                    [
                        gt_boxes.to(**as_f64),
                        target["labels"].reshape(num_gts, 1).to(**as_f64),
                        torch.zeros(num_gts, 1, **as_f64)
                        if iscrowd is None
                        else iscrowd.reshape(num_gts, 1).to(**as_f64),
                        torch.full((num_gts, 1), float("nan"), **as_f64)
                        if area is None
                        else area.reshape(num_gts, 1).to(**as_f64),
                    ],
                    dim=1,
                ).reshape(-1)
            )

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(image rows, pred rows, pred image ids, gt rows, gt image ids), repeats dropped."""
        images = _cat_state(self.image_rows, _IMAGE_COLUMNS)
        preds = _cat_state(self.pred_rows, _PRED_COLUMNS)
        gts = _cat_state(self.gt_rows, _GT_COLUMNS)
        num_preds, num_gts = images[:, 3].astype(np.int64), images[:, 4].astype(np.int64)
        _, first = np.unique(images[:, 0], return_index=True)
        keep = np.zeros(len(images), dtype=bool)
        keep[first] = True
        keep_preds, keep_gts = np.repeat(keep, num_preds), np.repeat(keep, num_gts)
        pred_image_ids = np.repeat(images[:, 0], num_preds)[keep_preds]
        gt_image_ids = np.repeat(images[:, 0], num_gts)[keep_gts]
        return images[keep], preds[keep_preds], pred_image_ids, gts[keep_gts], gt_image_ids

    def coco_ground_truth(self) -> dict[str, Any]:
        """The accumulated ground truth as a COCO instances dict (what ``ground_truth.json`` holds)."""
        images, preds, _, gts, gt_image_ids = self._rows()
        return coco_ground_truth(
            image_ids=images[:, 0],
            image_sizes=images[:, 1:3],
            gt_image_ids=gt_image_ids,
            gt_boxes=gts[:, :4],
            gt_labels=gts[:, 4],
            gt_iscrowd=gts[:, 5],
            gt_areas=gts[:, 6],
            class_names=self.class_names,
            label_to_category_id=self.label_to_category_id,
            extra_labels=preds[:, 5],
        )

    def coco_results(self) -> list[dict[str, Any]]:
        """The accumulated detections as a COCO results list (what ``detections.json`` holds)."""
        _, preds, pred_image_ids, _, _ = self._rows()
        return coco_results(
            pred_image_ids=pred_image_ids,
            pred_boxes=preds[:, :4],
            pred_scores=preds[:, 4],
            pred_labels=preds[:, 5],
            label_to_category_id=self.label_to_category_id,
        )

    def summary(self) -> COCOSummary:
        """Evaluate what was accumulated; per-class AP included."""
        return evaluate_coco(self.coco_ground_truth(), self.coco_results(), copy_inputs=False)

    def compute(self) -> dict[str, Tensor]:
        """The 12 COCO numbers under ``METRIC_KEYS`` (float32 scalars, -1 where undefined);
        with ``class_metrics`` also ``map_per_class`` (Tensor[Kc]: AP, -1 for a class without
        ground truth) and ``classes`` (Tensor[Kc]: their labels, as in ``class_names``)."""
        summary = self.summary()
        metrics = {key: torch.tensor(value, dtype=torch.float32) for key, value in zip(METRIC_KEYS, summary.stats)}
        if self.class_metrics:
            metrics["map_per_class"] = torch.as_tensor(summary.ap_per_category, dtype=torch.float32)
            metrics["classes"] = torch.as_tensor(self.labels_of(summary.category_ids), dtype=torch.int64)
        return metrics

    def labels_of(self, category_ids: np.ndarray) -> np.ndarray:
        """Inverse of ``label_to_category_id``: category ids (ndarray[Kc]) -> labels."""
        if self.label_to_category_id is None:
            return np.asarray(category_ids, dtype=np.int64)
        if isinstance(self.label_to_category_id, Mapping):
            label_of = {category_id: label for label, category_id in self.label_to_category_id.items()}
        else:
            label_of = {category_id: label for label, category_id in enumerate(self.label_to_category_id)}
        return np.array([label_of[category_id] for category_id in np.asarray(category_ids).tolist()], dtype=np.int64)
