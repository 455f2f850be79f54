"""The COCO ground truth of a split: the stored annotations, untouched.

Shorthand: I = images of the split, N = annotations of one image.

One builder, :func:`coco_ground_truth_from_rows`, turns Hub-schema rows (read WITHOUT their
images) into a COCO instances dict; validation and ``evaluate.py`` both score against it, or
against a user's instances file (``gt_json=``, :func:`load_ground_truth_json`). Boxes go from
``xyxy`` to ``[x, y, w, h]`` with no clipping and no rescaling, ``area`` is the row's
``objects.area`` (COCO's mask area), ``iscrowd`` the row's ``objects.iscrowd`` (0 where the
source has none, as the Hub schema) or its ``objects.difficult`` (VOC: a detection on a difficult
object is ignored, a missed one costs nothing), ids are the dataset's own. Every image is listed, empty
ones too. The metric scores the subset of images that were evaluated
(:func:`restrict_to_images`).

An annotation that cannot be scored (category outside the class list, a non-finite or
inverted box, a non-finite or negative area, object lists of unequal lengths) and a repeated
image are left out, counted and named: a warning, and ``ground_truth["info"]["left_out"]``
(:func:`left_out_message` phrases it).
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


from frcnn.evaluation.coco_format import xyxy_to_xywh


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
    bad_images: set[int] = set()
    seen: set[int] = set()
    for row in rows:
        image_id = int(row["image_id"])
        if image_id in seen:
            left_out["repeated image"] += 1
            bad_images.add(image_id)
            continue
        seen.add(image_id)
        images.append({"id": image_id, "width": int(row["width"]), "height": int(row["height"])})
        try:
            boxes, categories, areas, iscrowd, bad = _objects(row["objects"], len(ids))
        except (AttributeError, TypeError, ValueError):  # null or unreadable objects: the row is not scored
            left_out["null or malformed objects (rows)"] += 1
            bad_images.add(image_id)
            continue
        for reason, count in bad.items():
            left_out[reason] += count
            bad_images.add(image_id)
        xywh = xyxy_to_xywh(boxes)
        annotations += [
            {"id": len(annotations) + index + 1, "image_id": image_id, "category_id": category_id,
             "bbox": bbox, "area": area, "iscrowd": crowd}
            for index, (category_id, bbox, area, crowd) in enumerate(
                zip(ids[categories].tolist(), xywh.tolist(), areas.tolist(), iscrowd.tolist())
            )
        ]  # fmt: skip
    ground_truth = {
        "info": {
            "left_out": {"annotations": sum(left_out.values()), "reasons": dict(left_out), "image_ids": sorted(bad_images)}
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": int(cid), "name": str(name)} for cid, name in zip(ids.tolist(), class_names)],
    }
    message = left_out_message(ground_truth)
    if message:
        warnings.warn(message, stacklevel=2)
    return ground_truth


def _objects(objects: Mapping[str, Any], num_categories: int) -> tuple[np.ndarray, ...]:
    """(boxes (N, 4) xyxy, categories (N,), areas (N,), iscrowd (N,), Counter of reasons) of
    one row's scorable objects."""
    bad: Counter[str] = Counter()
    boxes = _array(objects.get("bbox"), np.float64).reshape(-1, 4)
    categories = _array(objects.get("category"), np.int64)
    areas = None if objects.get("area") is None else _array(objects["area"], np.float64)
    iscrowd = np.zeros(len(boxes), np.int64) if objects.get("iscrowd") is None else _array(objects["iscrowd"], np.int64)
    difficult = np.zeros(len(boxes), np.int64) if objects.get("difficult") is None else _array(objects["difficult"], np.int64)
    lengths = {len(boxes), len(categories), len(iscrowd), len(difficult), len(boxes) if areas is None else len(areas)}
    if len(lengths) > 1:
        bad["object lists of unequal lengths"] = max(lengths)
        empty = np.zeros(0, np.int64)
        return np.zeros((0, 4)), empty, np.zeros(0), empty, bad
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    areas = box_areas if areas is None else areas
    checks = {
        "category out of range": (categories < 0) | (categories >= num_categories),
        "non-finite box": ~np.isfinite(boxes).all(axis=1),
        "inverted box (x1 < x0 or y1 < y0)": (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]),
        "non-finite or negative area": ~np.isfinite(areas) | (areas < 0),
    }
    keep = np.ones(len(boxes), dtype=bool)
    for reason, failed in checks.items():
        failed &= keep  # each annotation counted once, under its first reason
        if failed.any():
            bad[reason] = int(failed.sum())
            keep &= ~failed
    ignored = (iscrowd != 0) | (difficult != 0)  # VOC's difficult objects are scored as crowds
    return boxes[keep], categories[keep], areas[keep], ignored[keep].astype(np.int64), bad


def _array(values: Any, dtype: type) -> np.ndarray:
    """A row's list field (None: empty) as a flat array."""
    return np.asarray([] if values is None else values, dtype=dtype).reshape(-1)


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
