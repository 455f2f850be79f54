"""Check one Hub-schema row's annotations: use it, repair it, or skip it with a kind.

A problem confined to one row never stops a run: the row is skipped (`BadRow`, with a `kind`),
or repaired, and every skip, drop and repair is counted by kind. `check_annotations` needs no
image (a stream can check every row before reading any image); `row_targets` repeats it and
adds what needs the decoded pixels. The kinds:

Row skipped (`BadRow.kind`):
    undecodable_image   empty, truncated or corrupt bytes, not an image (`decode.decode_rgb`)
    too_many_pixels     width x height above `data.max_pixels`, read from the header (`decode_rgb`)
    null_objects        `objects` is null
    malformed_objects   `objects` not a struct of lists; `bbox`/`category` missing, null, not
                        numbers, not 4 coordinates, or of different lengths
    label_out_of_range  a 0-based `category` outside 0..num_classes-2
    nonfinite_box       a NaN or infinite coordinate (a null coordinate reads as NaN)
    size_mismatch       `width`/`height` columns that disagree with the decoded pixels in aspect
                        ratio (needs the image), or are not whole numbers
Row kept, counted:
    size_rescaled       `width`/`height` columns that disagree with the pixels by a uniform scale (the
                        image was resized after annotation): boxes are scaled to the pixels
    degenerate_box      a box with a side under 1 px as given (zero or negative width/height): dropped
    box_outside_image   a box that keeps under 1 px a side once clipped to the image: dropped
COCO folders (`sources/coco_folder.CocoFolderSplit.problems`, checked when the folder is opened):
    missing_image_file  an image listed in the json without its file: the image is left out
    unknown_category    an annotation whose category id is not in `categories`: the annotation is left out
    unknown_image       an annotation whose image id is not in `images`: the annotation is left out
VOC devkits (`sources/voc.VOCSplit.problems`, checked when a split is opened; also `missing_image_file`
and `unknown_category`, for a class name not among the 20):
    missing_annotation_file    an image of an ImageSets list without its Annotations/<name>.xml: left out
    malformed_annotation_file  an xml that does not parse, without a numeric size, or with an object
                               without a numeric bndbox: the image is left out

Rule for `width`/`height`: the decoded pixels are the truth (boxes must land on them). Columns
equal to the pixels, or null, are fine; a uniform rescale (same aspect ratio within one pixel)
is repaired; anything else (transposed, cropped, padded) leaves the boxes' frame unknown: skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

UNDECODABLE_IMAGE = "undecodable_image"
TOO_MANY_PIXELS = "too_many_pixels"
NULL_OBJECTS = "null_objects"
MALFORMED_OBJECTS = "malformed_objects"
LABEL_OUT_OF_RANGE = "label_out_of_range"
NONFINITE_BOX = "nonfinite_box"
SIZE_MISMATCH = "size_mismatch"
SIZE_RESCALED = "size_rescaled"
DEGENERATE_BOX = "degenerate_box"
BOX_OUTSIDE_IMAGE = "box_outside_image"
MISSING_IMAGE_FILE = "missing_image_file"
UNKNOWN_CATEGORY = "unknown_category"
UNKNOWN_IMAGE = "unknown_image"
MISSING_ANNOTATION_FILE = "missing_annotation_file"
MALFORMED_ANNOTATION_FILE = "malformed_annotation_file"

ANNOTATION_KINDS = (NULL_OBJECTS, MALFORMED_OBJECTS, LABEL_OUT_OF_RANGE, NONFINITE_BOX)
ROW_SKIP_KINDS = (UNDECODABLE_IMAGE, TOO_MANY_PIXELS, *ANNOTATION_KINDS, SIZE_MISMATCH)
ROW_COUNT_KINDS = (SIZE_RESCALED, DEGENERATE_BOX, BOX_OUTSIDE_IMAGE)
FOLDER_KINDS = (MISSING_IMAGE_FILE, UNKNOWN_CATEGORY, UNKNOWN_IMAGE, MISSING_ANNOTATION_FILE, MALFORMED_ANNOTATION_FILE)
ALL_KINDS = ROW_SKIP_KINDS + ROW_COUNT_KINDS + FOLDER_KINDS

MIN_BOX_SIDE = 1.0  # px; as `DetectionTransform`'s sanitising, so nothing is dropped there uncounted


class BadRow(ValueError):
    """A row that cannot be used; `kind` is one of `ROW_SKIP_KINDS`, `str(error)` is `"kind: detail"`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def check_annotations(row: Mapping[str, Any], num_classes: int) -> None:
    """Raise `BadRow` (one of `ANNOTATION_KINDS`) when the row's `objects` cannot be used; no image needed."""
    _checked_objects(row.get("objects"), num_classes)


def row_targets(
    row: Mapping[str, Any], image_hw: tuple[int, int], num_classes: int
) -> tuple[Tensor, Tensor, Tensor, dict[str, int]]:
    """The checked targets of one Hub-schema row whose image decoded to `image_hw` = (H, W) pixels.

    Args:
        row: `width`, `height` and `objects` {`bbox` [N][4] xyxy absolute pixels, `category`
            [N] 0-based, optional `iscrowd` and `difficult` [N]}; other fields are ignored.
        num_classes: classes including background, so labels are 1..num_classes-1.

    Returns:
        boxes (Tensor[M, 4], float32): xyxy in the decoded image's pixels, clipped to it, each
            side >= 1 px; M <= N after the box-level drops.
        labels (Tensor[M], int64): category + 1.
        iscrowd (Tensor[M], bool): the row's `objects.iscrowd` or `objects.difficult` (VOC): boxes
            scored, never trained on; all False when both are absent.
        counts: per kind of `ROW_COUNT_KINDS`, the boxes dropped and the repairs made (only
            nonzero kinds appear).

    Raises:
        BadRow: the row must be skipped (`ANNOTATION_KINDS` or `size_mismatch`).
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    gt_boxes, labels, iscrowd = _checked_objects(row.get("objects"), num_classes)
    counts: dict[str, int] = {}

    scale = _column_scale(row.get("width"), row.get("height"), width, height)
    if scale is not None:
        gt_boxes = gt_boxes * np.array([scale[0], scale[1], scale[0], scale[1]], dtype=np.float32)
        counts[SIZE_RESCALED] = 1

    degenerate = (gt_boxes[:, 2:] - gt_boxes[:, :2] < MIN_BOX_SIDE).any(axis=1)
    clipped = np.clip(gt_boxes, 0, np.array([width, height, width, height], dtype=np.float32))
    outside = ~degenerate & (clipped[:, 2:] - clipped[:, :2] < MIN_BOX_SIDE).any(axis=1)
    for kind, dropped in ((DEGENERATE_BOX, degenerate), (BOX_OUTSIDE_IMAGE, outside)):
        if dropped.any():
            counts[kind] = int(dropped.sum())
    keep = ~(degenerate | outside)
    return torch.from_numpy(clipped[keep]), torch.from_numpy(labels[keep]), torch.from_numpy(iscrowd[keep]), counts


def _checked_objects(objects: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes float32 [N, 4], labels int64 [N], iscrowd bool [N]) of `objects`, or `BadRow`.

    NumPy, not torch: a row has a few boxes, where torch's per-op overhead would dominate.
    """
    gt_boxes, categories, iscrowd = _read_objects(objects)
    out_of_range = (categories < 0) | (categories > num_classes - 2)
    if out_of_range.any():
        raise BadRow(LABEL_OUT_OF_RANGE, f"objects.category {int(categories[out_of_range][0])} is outside 0..{num_classes - 2}")
    finite = np.isfinite(gt_boxes).all(axis=1)
    if not finite.all():
        raise BadRow(NONFINITE_BOX, f"objects.bbox {gt_boxes[~finite][0].tolist()} is not finite")
    return gt_boxes, categories + 1, iscrowd


def _read_objects(objects: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes float32 [N, 4], categories int64 [N], crowd or difficult bool [N]) of `objects`."""
    if objects is None:
        raise BadRow(NULL_OBJECTS, "objects is null")
    if not isinstance(objects, Mapping):
        raise BadRow(MALFORMED_OBJECTS, f"objects is a {type(objects).__name__}, not a struct of lists")
    try:
        boxes = np.asarray(objects["bbox"], dtype=np.float32)
        categories = np.asarray(objects["category"], dtype=np.int64)
        crowd, difficult = objects.get("iscrowd"), objects.get("difficult")
        iscrowd = np.zeros(len(categories), dtype=bool) if crowd is None else np.asarray(crowd, dtype=bool)
        hard = np.zeros(len(categories), dtype=bool) if difficult is None else np.asarray(difficult, dtype=bool)
    except KeyError as error:
        raise BadRow(MALFORMED_OBJECTS, f"objects has no {error.args[0]!r} field") from None
    except (TypeError, ValueError) as error:
        raise BadRow(MALFORMED_OBJECTS, f"objects holds a null or non-numeric value ({error})") from None
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise BadRow(MALFORMED_OBJECTS, f"objects.bbox has shape {list(boxes.shape)}, not [N, 4]")
    if not len(boxes) == categories.size == iscrowd.size == hard.size or categories.ndim != 1:
        flags = f" and {iscrowd.size} iscrowd flags" if crowd is not None else ""
        flags += f" and {hard.size} difficult flags" if difficult is not None else ""
        raise BadRow(MALFORMED_OBJECTS, f"objects has {len(boxes)} boxes, {categories.size} categories{flags}")
    return boxes, categories, iscrowd | hard


def _column_scale(column_w: Any, column_h: Any, width: int, height: int) -> tuple[float, float] | None:
    """(sx, sy) from the `width`/`height` columns' frame to the pixels when a uniform rescale
    repairs them; None when they agree or are null; `BadRow(size_mismatch)` otherwise."""
    if column_w is None or column_h is None:
        return None
    try:
        column_w, column_h = int(column_w), int(column_h)
    except (TypeError, ValueError):
        raise BadRow(SIZE_MISMATCH, f"width/height columns {column_w!r}x{column_h!r} are not whole numbers") from None
    if (column_w, column_h) == (width, height):
        return None
    if column_w > 0 and column_h > 0:
        sx, sy = width / column_w, height / column_h
        # Rounding the resized sides to whole pixels moves each scale by up to half a pixel.
        if abs(sx - sy) <= 0.5 / column_w + 0.5 / column_h + 1e-9:
            return sx, sy
    raise BadRow(SIZE_MISMATCH, f"width/height columns {column_w}x{column_h} but the image is {width}x{height}")


def annotation_problem(row: Mapping[str, Any], num_classes: int) -> str | None:
    """The kind of problem of a row's annotations (no image read), or None."""
    try:
        check_annotations(row, num_classes)
    except BadRow as bad:
        return bad.kind
    return None


def has_trainable_box(row: Mapping[str, Any]) -> bool:
    """Whether a row (annotations checked) has a box that is neither crowd nor difficult and that
    the transform keeps: at least 1 px wide and high once clipped to the image (`width` × `height`)."""
    objects = row["objects"]
    boxes = np.asarray(objects["bbox"], dtype=np.float64).reshape(-1, 4)
    boxes = np.clip(boxes, 0, [row["width"], row["height"], row["width"], row["height"]])
    valid = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    for flag in ("iscrowd", "difficult"):
        if objects.get(flag) is not None:
            valid &= ~np.asarray(objects[flag], dtype=bool)
    return bool(valid.any())
