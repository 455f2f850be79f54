"""The COCO ground truth of a split: the stored annotations, with the training targets' repairs.

Shorthand: I = images of the split, N = annotations of one image.

One builder, :func:`coco_ground_truth_from_rows`, turns Hub-schema rows (read WITHOUT their
images) into a COCO instances dict; validation and ``evaluate.py`` both score against it, or
against a user's instances file (``gt_json=``, :func:`load_ground_truth_json`, used as it is).
Boxes go from ``xyxy`` to ``[x, y, w, h]``, ``area`` is the row's ``objects.area`` (COCO's mask
area), ``iscrowd`` the row's ``objects.iscrowd`` (0 where the source has none, as the Hub
schema) or its ``objects.difficult`` (VOC: a detection on a difficult object is ignored, a missed
one costs nothing), ids are the dataset's own. Every image is listed, empty ones too. The metric scores the
subset of images that were evaluated (:func:`restrict_to_images`).

What is scored is what was trained on: the boxes pass through the training targets' own checks
(:func:`frcnn.data.row_checks.checked_boxes`: clipped to the image, degenerate and outside boxes
dropped, each counted under its kind in ``info["repaired"]``), and an image whose decoded size is
a uniform rescale of its ``width``/``height`` columns has its boxes and areas scaled onto the
pixels once its size is known (:func:`in_decoded_pixels`, ``row_checks.pixel_scale``). Clean
data (boxes inside the image, columns equal to the pixels) keeps its stored annotations untouched:
the official COCO protocol.

A row that training skips for its annotations, and a repeated image, are left out of the metric
under the training's kind, counted and named: a warning, and ``ground_truth["info"]["left_out"]``
(:func:`left_out_message` phrases it). An ``area`` that cannot be scored (non-finite, negative,
a list of another length) becomes the box area, counted as ``info["repaired"]["unscorable_area"]``.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frcnn.data.row_checks import REPEATED_IMAGE, SIZE_RESCALED, BadRow, CheckedBoxes, checked_boxes, pixel_scale
from frcnn.evaluation.coco_format import xyxy_to_xywh

UNSCORABLE_AREA = "unscorable_area"  # the metric's own repair: training reads no area


class GroundTruthError(ValueError):
    """Ground truth that cannot score the evaluated images; the message is one line."""


def coco_ground_truth_from_rows(
    rows: Iterable[Mapping[str, Any]], class_names: Sequence[str], category_ids: Sequence[int]
) -> dict[str, Any]:
    """The COCO instances dict of a split's rows.

    Args:
        rows: Hub-schema rows without the image: ``image_id``, ``width``, ``height``,
            ``objects`` {``category`` (list[int], 0-based), ``bbox`` (list of [x0, y0, x1, y1]
            absolute pixels), optional ``area`` (list[float]; the box area where absent) and
            ``iscrowd`` and ``difficult`` (list[int]; 0 where absent)}.
        class_names: name of each category index (K names, no background).
        category_ids: the dataset's category id of each index (K ids).

    Returns:
        ``{"info", "images", "annotations", "categories"}``: images in row order,
        annotations numbered 1..M (COCOeval reads id 0 as "unmatched"), all K categories;
        ``info["left_out"]`` counts what was left out (see the module docstring).
    """
    if len(class_names) != len(category_ids):
        raise ValueError(f"{len(class_names)} class names for {len(category_ids)} category ids")
    ids = np.asarray(category_ids, dtype=np.int64)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    repaired: Counter[str] = Counter()
    bad_images: set[int] = set()
    seen: set[int] = set()
    for row in rows:
        image_id = int(row["image_id"])
        if image_id in seen:
            left_out[REPEATED_IMAGE] += 1
            bad_images.add(image_id)
            continue
        seen.add(image_id)
        width, height = int(row["width"]), int(row["height"])
        images.append({"id": image_id, "width": width, "height": height})
        try:
            checked = checked_boxes(row, (width, height), len(ids) + 1)
        except BadRow as bad:  # the stream skips the row: it is not scored
            left_out[bad.kind] += 1
            bad_images.add(image_id)
            continue
        areas, replaced = _areas(row["objects"], checked)
        repaired.update({**checked.counts, **({UNSCORABLE_AREA: replaced} if replaced else {})})
        categories = checked.labels - 1
        stored = np.asarray(row["objects"]["bbox"], dtype=np.float64).reshape(-1, 4)[checked.kept]  # not via float32
        xywh = xyxy_to_xywh(stored)
        annotations += [
            {"id": len(annotations) + index + 1, "image_id": image_id, "category_id": category_id,
             "bbox": bbox, "area": area, "iscrowd": int(crowd)}
            for index, (category_id, bbox, area, crowd) in enumerate(
                zip(ids[categories].tolist(), xywh.tolist(), areas.tolist(), checked.iscrowd.tolist())
            )
        ]  # fmt: skip
    ground_truth = {
        "info": {
            "left_out": {"annotations": sum(left_out.values()), "reasons": dict(left_out), "image_ids": sorted(bad_images)},
            "repaired": dict(repaired),
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": int(cid), "name": str(name)} for cid, name in zip(ids.tolist(), class_names)],
    }
    message = left_out_message(ground_truth)
    if message:
        warnings.warn(message, stacklevel=2)
    return ground_truth


def _areas(objects: Mapping[str, Any], checked: CheckedBoxes) -> tuple[np.ndarray, int]:
    """(ndarray[M], float64) the stored ``area`` of each kept box, its box area where the row
    has none or one that cannot be scored (non-finite, negative, a list of another length), and
    how many stored areas were so replaced (training reads no area, so the box stays scored)."""
    boxes = np.asarray(objects["bbox"], dtype=np.float64).reshape(-1, 4)[checked.kept]
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if objects.get("area") is None:
        return box_areas, 0
    try:
        areas = np.asarray(objects["area"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return box_areas, len(box_areas)
    if len(areas) != len(objects["bbox"]):
        return box_areas, len(box_areas)
    areas = areas[checked.kept]
    bad = ~(np.isfinite(areas) & (areas >= 0))
    return np.where(bad, box_areas, areas), int(bad.sum())


def in_decoded_pixels(ground_truth: Mapping[str, Any], image_sizes: Mapping[int, tuple[int, int]]) -> dict[str, Any]:
    """``ground_truth`` with each image whose decoded size ``image_sizes[id]`` = (H, W) is a
    uniform rescale of its ``width``/``height`` moved onto those pixels (boxes and areas scaled,
    as the training targets are: ``row_checks.pixel_scale``), counted in
    ``info["repaired"]["size_rescaled"]``. Images of another size (which the stream skips as
    ``size_mismatch``) or without a known size stay as they are. Returns fresh dicts."""
    scales: dict[int, tuple[float, float]] = {}
    images = []
    for image in ground_truth["images"]:
        height, width = image_sizes.get(image["id"], (image["height"], image["width"]))
        try:
            scale = pixel_scale(image["width"], image["height"], int(width), int(height))
        except BadRow:
            scale = None
        if scale is not None:
            scales[image["id"]] = scale
            image = {**image, "width": int(width), "height": int(height)}
        images.append(image)
    if not scales:
        return dict(ground_truth)
    annotations = []
    for annotation in ground_truth["annotations"]:
        if annotation["image_id"] in scales:
            sx, sy = scales[annotation["image_id"]]
            x, y, w, h = annotation["bbox"]
            annotation = {**annotation, "bbox": [x * sx, y * sy, w * sx, h * sy], "area": annotation["area"] * sx * sy}
        annotations.append(annotation)
    info = dict(ground_truth.get("info", {}))
    info["repaired"] = {**info.get("repaired", {}), SIZE_RESCALED: len(scales)}
    return {**ground_truth, "info": info, "images": images, "annotations": annotations}


def left_out_message(ground_truth: Mapping[str, Any]) -> str | None:
    """One line on what :func:`coco_ground_truth_from_rows` left out, or None when nothing was."""
    left_out = ground_truth.get("info", {}).get("left_out")
    if not left_out or not left_out["image_ids"]:
        return None
    reasons = ", ".join(f"{reason}: {count}" for reason, count in left_out["reasons"].items())
    image_ids = left_out["image_ids"]
    shown = ", ".join(map(str, image_ids[:5])) + (f" and {len(image_ids) - 5} more" if len(image_ids) > 5 else "")
    return f"ground truth: left out of the metric, {reasons}; image_id {shown}"


def restrict_to_images(ground_truth: Mapping[str, Any], image_ids: Iterable[int]) -> dict[str, Any]:
    """The ground truth of ``image_ids`` only (in the ground truth's order), as fresh dicts that
    a COCO backend may annotate without touching ``ground_truth``.

    Raises:
        GroundTruthError: an image id that the ground truth lacks.
    """
    wanted = {int(image_id) for image_id in image_ids}
    images = [dict(image) for image in ground_truth["images"] if image["id"] in wanted]
    if len(images) != len(wanted):
        missing = sorted(wanted - {image["id"] for image in images})
        raise GroundTruthError(
            f"{len(missing)} of the {len(wanted)} evaluated images are not in the ground truth "
            f"(e.g. image_id {missing[0]}): score against the ground truth of the data that was evaluated"
        )
    annotations = [dict(a, bbox=list(a["bbox"])) for a in ground_truth["annotations"] if a["image_id"] in wanted]
    categories = [dict(category) for category in ground_truth["categories"]]
    return {**ground_truth, "images": images, "annotations": annotations, "categories": categories}


def load_ground_truth_json(path: str | Path) -> dict[str, Any]:
    """A COCO instances file (e.g. ``instances_val2017.json``) as a dict.

    Raises:
        GroundTruthError: no such file, not json, or no ``images``/``annotations``/``categories``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise GroundTruthError(f"gt_json={path} does not exist: give a COCO instances file (e.g. instances_val2017.json)")
    try:
        ground_truth = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise GroundTruthError(f"gt_json={path} is not a json file ({error.__class__.__name__})") from None
    keys = ("images", "annotations", "categories")
    if not isinstance(ground_truth, dict) or not all(isinstance(ground_truth.get(key), list) for key in keys):
        raise GroundTruthError(f"gt_json={path} is not a COCO instances file: it needs the lists {', '.join(keys)}")
    return ground_truth


def check_same_ids(ground_truth: Mapping[str, Any], image_ids: Iterable[int], category_ids: Iterable[int], name: str) -> None:
    """Raise :class:`GroundTruthError`, one line with counts, unless ``ground_truth`` (named
    ``name`` in the message) holds every one of ``image_ids`` and exactly ``category_ids``."""
    file_images = {image["id"] for image in ground_truth["images"]}
    file_categories = {category["id"] for category in ground_truth["categories"]}
    images, categories = {int(i) for i in image_ids}, {int(c) for c in category_ids}
    problems = []
    if missing := sorted(images - file_images):
        problems.append(
            f"{len(missing)} of the data's {len(images)} image ids are not among its {len(file_images)} "
            f"(e.g. {missing[0]})"
        )
    if ours := sorted(categories - file_categories):
        problems.append(
            f"{len(ours)} of our {len(categories)} category ids are not among its {len(file_categories)} (e.g. {ours[0]})"
        )
    if theirs := sorted(file_categories - categories):
        problems.append(f"{len(theirs)} of its category ids are not ours (e.g. {theirs[0]})")
    if problems:
        raise GroundTruthError(f"{name} does not match the data: " + "; ".join(problems))
