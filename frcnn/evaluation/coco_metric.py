"""COCO box mAP: a torchmetrics ``Metric`` over the faster-coco-eval backend.

Shorthand: B = images in one update, I = images evaluated, K = detections, C = number of
classes including background (label 0).

The ground truth is the dataset's own (:mod:`frcnn.evaluation.ground_truth`), set once per
evaluation; ``update`` takes only detections and the ids of the images they belong to. Boxes
are ``xyxy`` absolute pixels of the ORIGINAL image (map them back from the resized input
before ``update``); labels are contiguous 1..C-1. ``compute`` scores the detections against
the ground truth of the evaluated images with ``COCOeval_faster``, whose numbers equal
pycocotools' ``COCOeval`` (tests/evaluation/test_coco_metric.py checks it).
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

from frcnn.evaluation.coco_format import LabelToCategoryId, coco_results
from frcnn.evaluation.ground_truth import GroundTruthError, in_decoded_pixels, restrict_to_images

# pycocotools' ``COCOeval.stats`` in order, under their usual names ...
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# ... and under torchmetrics' ``MeanAveragePrecision`` names (what the training app logs).
METRIC_KEYS = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip

_IMAGE_COLUMNS = 4  # image_id, number of detections, decoded height and width (-1: not given)
_PRED_COLUMNS = 6  # x1, y1, x2, y2, score, label

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

    ``ground_truth`` is a COCO instances dict (:mod:`frcnn.evaluation.ground_truth`),
    ``results`` a COCO results list (:func:`~frcnn.evaluation.coco_format.coco_results`);
    its categories are the evaluated ones. The backend annotates
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
    """A flat ``cat`` state, synced (one tensor) or not (a list), as a float64 (rows, columns) array."""
    if isinstance(state, list):
        state = torch.cat(state) if state else torch.zeros(0, dtype=torch.float64)
    return state.detach().cpu().to(torch.float64).reshape(-1, num_columns).numpy()


class COCOEvaluator(Metric):
    """COCO box mAP of a detector against the dataset's own ground truth, equal to pycocotools.

    Example::

        evaluator = COCOEvaluator(dm.label_to_category_id, ground_truth=dm.val_ground_truth())
        evaluator.update(preds, [target["image_id"] for target in targets])  # per batch
        metrics = evaluator.compute()   # {"map": tensor(0.37), "map_50": ..., "mar_100": ...}

    Args:
        label_to_category_id: label -> dataset category id (sequence indexed by label, or
            mapping), the identity when omitted: the ``category_id`` of each detection.
        class_metrics: ``compute`` also returns ``map_per_class`` and ``classes``.
        ground_truth: the COCO instances dict of the split (or of ``gt_json``); settable
            later through the ``ground_truth`` attribute (the training app sets it at each
            validation's start). Its images, categories and ids are the dataset's.

    ``update(preds, image_ids, image_sizes=None)``: one entry per image.
        preds: ``boxes`` (Tensor[K, 4]) xyxy, ``scores`` (Tensor[K]), ``labels`` (Tensor[K]).
        image_ids: the dataset's image id of each (int or 0-dim Tensor).
        image_sizes: the decoded (H, W) of each (a target's ``orig_size``): an image stored at
            a uniform rescale of its ``width``/``height`` is scored in its pixels, as it was
            trained (``ground_truth.in_decoded_pixels``).

    ``compute`` scores the images that were updated, and only those: the ground truth is
    restricted to them. An image seen twice (DistributedSampler pads the last batch with
    repeats) counts once. States are flat float64 tensors with ``cat`` reduction, so DDP
    sync works with any number of updates per rank, zero included.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    image_rows: list[Tensor]
    pred_rows: list[Tensor]

    def __init__(
        self,
        label_to_category_id: LabelToCategoryId = None,
        class_metrics: bool = False,
        ground_truth: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.label_to_category_id = label_to_category_id
        self.class_metrics = class_metrics
        self.ground_truth = ground_truth
        self.add_state("image_rows", default=[], dist_reduce_fx="cat")
        self.add_state("pred_rows", default=[], dist_reduce_fx="cat")

    def update(
        self,
        preds: Sequence[Mapping[str, Tensor]],
        image_ids: Sequence[int | Tensor],
        image_sizes: Sequence[Sequence[int] | Tensor] | None = None,
    ) -> None:
        if len(preds) != len(image_ids) or (image_sizes is not None and len(image_sizes) != len(preds)):
            raise ValueError(f"got {len(preds)} predictions for {len(image_ids)} image ids")
        if not preds:
            return
        as_f64 = dict(dtype=torch.float64, device=self.device)
        ids = torch.stack([torch.as_tensor(image_id).reshape(()).to(**as_f64) for image_id in image_ids])
        num_preds = torch.tensor([len(pred["boxes"]) for pred in preds], **as_f64)
        if image_sizes is None:
            sizes = torch.full((len(preds), 2), -1.0, **as_f64)
        else:
            sizes = torch.stack([torch.as_tensor(size).reshape(2).to(**as_f64) for size in image_sizes])
        self.image_rows.append(torch.cat([torch.stack([ids, num_preds], dim=1), sizes], dim=1).reshape(-1))
        self.pred_rows.append(
            torch.cat(
                [
                    torch.cat(
                        [
                            pred["boxes"].reshape(-1, 4).to(**as_f64),
                            pred["scores"].reshape(-1, 1).to(**as_f64),
                            pred["labels"].reshape(-1, 1).to(**as_f64),
                        ],
                        dim=1,
                    )
                    for pred in preds
                ]
            ).reshape(-1)
        )

    def _sync_dist(self, *args: Any, **kwargs: Any) -> None:
        # torchmetrics stands in a float32 placeholder for a rank without updates; the
        # all-gather needs every rank's state in one dtype, so stand in a float64 one.
        for name in ("image_rows", "pred_rows"):
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.zeros(0, dtype=torch.float64, device=self.device)])
        super()._sync_dist(*args, **kwargs)

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(evaluated image ids (I,), pred rows (K, 6), their image ids (K,), decoded (H, W) of
        the evaluated images (I, 2), -1 where not given), repeats dropped."""
        images = _cat_state(self.image_rows, _IMAGE_COLUMNS)
        preds = _cat_state(self.pred_rows, _PRED_COLUMNS)
        num_preds = images[:, 1].astype(np.int64)
        _, first = np.unique(images[:, 0], return_index=True)
        keep = np.zeros(len(images), dtype=bool)
        keep[first] = True
        keep_preds = np.repeat(keep, num_preds)
        pred_image_ids = np.repeat(images[:, 0], num_preds)[keep_preds]
        return images[keep, 0].astype(np.int64), preds[keep_preds], pred_image_ids.astype(np.int64), images[keep, 2:].astype(np.int64)

    def evaluated_image_ids(self) -> np.ndarray:
        """The ids of the images updated so far (ndarray[I], first-seen order, no repeats)."""
        return self._rows()[0]

    def coco_ground_truth(self) -> dict[str, Any]:
        """The ground truth of the evaluated images (what ``ground_truth.json`` holds).

        Raises:
            GroundTruthError: no ground truth was given, or it lacks an evaluated image.
        """
        if self.ground_truth is None:
            raise GroundTruthError(
                "COCOEvaluator has no ground truth: pass ground_truth= (e.g. the data module's val_ground_truth())"
            )
        image_ids, _, _, sizes = self._rows()
        known = {image_id: (height, width) for image_id, (height, width) in zip(image_ids.tolist(), sizes.tolist()) if height > 0}
        return in_decoded_pixels(restrict_to_images(self.ground_truth, image_ids), known)

    def coco_results(self) -> list[dict[str, Any]]:
        """The accumulated detections as a COCO results list (what ``detections.json`` holds)."""
        _, preds, pred_image_ids, _ = self._rows()
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
        ground truth) and ``classes`` (Tensor[Kc]: their labels)."""
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
