"""Detections and ground truth in the COCO json formats, and writing them to disk.

Shorthand: I = number of images, N = number of ground-truth boxes, K = number of detections.
Boxes enter as ``xyxy`` absolute pixels of the ORIGINAL image and leave as COCO ``[x, y, w, h]``.
Labels are contiguous (0 = background, 1..C-1 = classes); ``label_to_category_id`` maps
them to the dataset's category ids (COCO's 1..90 with gaps), the identity when omitted.

These builders are the only place where the evaluator's inputs become COCO dicts: the
metric feeds their output to the backend and ``evaluate.py`` writes the very same output
to ``ground_truth.json`` / ``detections.json``, so pycocotools over the files reproduces
the logged numbers exactly.
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


def coco_categories(
    class_names: Sequence[str] | None,
    label_to_category_id: LabelToCategoryId = None,
    labels_seen: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The ``categories`` list: every class of ``class_names`` (index 0 is background and
    skipped), or, without names, every label in ``labels_seen`` named by its number."""
    if class_names is not None:
        labels = np.arange(1, len(class_names), dtype=np.int64)
        names = list(class_names[1:])
    else:
        labels = np.unique(labels_seen if labels_seen is not None else np.zeros(0, np.int64)).astype(np.int64)
        names = [str(label) for label in labels.tolist()]
    category_ids = category_ids_for(labels, label_to_category_id).tolist()
    return [{"id": cid, "name": name} for cid, name in zip(category_ids, names)]


def coco_ground_truth(
    image_ids: np.ndarray,
    image_sizes: np.ndarray,
    gt_image_ids: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    gt_iscrowd: np.ndarray | None = None,
    gt_areas: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    label_to_category_id: LabelToCategoryId = None,
    extra_labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """The COCO instances dict of the evaluated split.

    Args:
        image_ids (ndarray[I]): dataset image ids; every evaluated image, with or without boxes.
        image_sizes (ndarray[I, 2]): original (height, width).
        gt_image_ids (ndarray[N]), gt_boxes (ndarray[N, 4]) xyxy, gt_labels (ndarray[N]).
        gt_iscrowd (ndarray[N]): 0/1, all 0 when omitted.
        gt_areas (ndarray[N]): the source's areas (COCO's are mask areas); NaN or omitted
            means the box area ``w * h``.
        extra_labels (ndarray): labels that must have a category when there are no
            ``class_names`` (the predicted ones).

    Returns:
        ``{"images", "annotations", "categories"}``; annotation ids are 1..N, since
        COCOeval treats id 0 as "unmatched".
    """
    xywh = xyxy_to_xywh(gt_boxes.reshape(-1, 4))
    areas = xywh[:, 2] * xywh[:, 3]
    if gt_areas is not None:
        given = ~np.isnan(gt_areas)
        areas[given] = gt_areas[given]
    iscrowd = np.zeros(len(xywh), np.int64) if gt_iscrowd is None else gt_iscrowd.astype(np.int64)
    category_ids = category_ids_for(gt_labels, label_to_category_id)

    images = [
        {"id": image_id, "height": height, "width": width}
        for image_id, (height, width) in zip(
            image_ids.astype(np.int64).tolist(), image_sizes.astype(np.int64).tolist()
        )
    ]
    annotations = [
        {"id": index + 1, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": area, "iscrowd": crowd}
        for index, (image_id, category_id, bbox, area, crowd) in enumerate(
            zip(
                gt_image_ids.astype(np.int64).tolist(),
                category_ids.tolist(),
                xywh.tolist(),
                areas.tolist(),
                iscrowd.tolist(),
            )
        )
    ]
    labels_seen = np.concatenate([gt_labels.reshape(-1), np.zeros(0) if extra_labels is None else extra_labels])
    categories = coco_categories(class_names, label_to_category_id, labels_seen)
    return {"images": images, "annotations": annotations, "categories": categories}


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
