"""Detections in the COCO results format, and writing COCO dicts to disk.

Shorthand: K = number of detections. Boxes enter as ``xyxy`` absolute pixels of the ORIGINAL
image and leave as COCO ``[x, y, w, h]``. Labels are contiguous (0 = background, 1..C-1 =
classes); ``label_to_category_id`` maps them to the dataset's category ids (COCO's 1..90 with
gaps), the identity when omitted.

:func:`coco_results` is the only place where detections become a COCO list: the metric feeds
it to the backend and ``evaluate.py`` writes the very same list to ``detections.json``, so
pycocotools over the files reproduces the logged numbers exactly. The ground truth's builder
is :mod:`frcnn.evaluation.ground_truth`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LabelToCategoryId = Sequence[int] | Mapping[int, int] | None


def category_ids_for(labels: np.ndarray, label_to_category_id: LabelToCategoryId) -> np.ndarray:
    """Map contiguous labels (int array, any shape) to dataset category ids."""
    labels = labels.astype(np.int64)
    if label_to_category_id is None:
        return labels
    if isinstance(label_to_category_id, Mapping):
        lookup = np.zeros(max(label_to_category_id) + 1, dtype=np.int64)
        lookup[list(label_to_category_id)] = list(label_to_category_id.values())
    else:
        lookup = np.asarray(label_to_category_id, dtype=np.int64)
    return lookup[labels]


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """boxes (ndarray[N, 4]) xyxy -> (ndarray[N, 4]) xywh, in float64."""
    boxes = boxes.astype(np.float64)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def coco_results(
    pred_image_ids: np.ndarray,
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_labels: np.ndarray,
    label_to_category_id: LabelToCategoryId = None,
) -> list[dict[str, Any]]:
    """The COCO results list: one ``{"image_id", "category_id", "bbox", "score"}`` per
    detection; pred_boxes (ndarray[K, 4]) xyxy, the other arrays (K,)."""
    xywh = xyxy_to_xywh(pred_boxes.reshape(-1, 4))
    category_ids = category_ids_for(pred_labels, label_to_category_id)
    return [
        {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}
        for image_id, category_id, bbox, score in zip(
            pred_image_ids.astype(np.int64).tolist(),
            category_ids.tolist(),
            xywh.tolist(),
            pred_scores.astype(np.float64).tolist(),
        )
    ]


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as compact json; floats keep their exact (round-trip) value."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # json.dumps runs the C encoder; json.dump streams through the pure-Python one (10x slower).
    path.write_text(json.dumps(obj, separators=(",", ":")))
    return path
