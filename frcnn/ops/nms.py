"""Non-maximum suppression for a whole batch in few calls, packed into fixed-size outputs.

Every NMS call waits for the device (its output size depends on the data), so groups
(an image's pyramid level, or an image's class) share calls: boxes of different groups
are moved apart (torchvision's "coordinate trick", on a 2-D grid) so that one call never
lets them suppress each other. A call's cost grows with the square of its box count, so groups are packed into
calls of at most ``max_boxes_per_call`` boxes (torchvision's crossover between one call
and one per group: 1,000 boxes on the CPU, 5,000 on a GPU).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import nms

__all__ = ["batched_nms_per_image", "grouped_nms", "pad_row"]


def pad_row(values: Tensor) -> Tensor:
    """``values [K, ...]`` with a row of zeros appended: ``[K + 1, ...]``."""
    return torch.cat([values, values.new_zeros((1, *values.shape[1:]))])


def max_boxes_per_call(device: torch.device) -> int:
    return 1000 if device.type == "cpu" else 5000


def grouped_nms(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    iou_threshold: float,
    num_groups: int,
    group_sizes: list[int] | None = None,
) -> Tensor:
    """NMS within each group: indices ``[N']`` into ``boxes [N, 4]`` of the kept boxes,
    by decreasing score.

    Args:
        scores: ``[N]``; groups: ``[N]`` int64, each in ``[0, num_groups)``.
        group_sizes: when ``groups`` is sorted, the length of each run of equal ids; saves
            one read from the device when the boxes need more than one call.
    """
    limit = max_boxes_per_call(boxes.device)
    if boxes.shape[0] <= limit:
        return _offset_nms(boxes, scores, groups, iou_threshold, num_groups)
    order = None
    if group_sizes is None:
        groups, order = torch.sort(groups, stable=True)
        boxes, scores = boxes[order], scores[order]
        counts = torch.zeros(num_groups, dtype=torch.int64, device=groups.device)
        counts = counts.scatter_add_(0, groups, torch.ones_like(groups))
        group_sizes = [size for size in counts.tolist() if size]  # the one read from the device
    keep, start, end = [], 0, 0
    for size in group_sizes + [limit + 1]:  # the sentinel flushes the last call
        if end > start and end - start + size > limit:
            chunk = slice(start, end)
            keep.append(_offset_nms(boxes[chunk], scores[chunk], groups[chunk], iou_threshold, num_groups) + start)
            start = end
        end += size
    keep = torch.cat(keep)
    keep = keep[torch.sort(scores[keep], descending=True, stable=True).indices]
    return keep if order is None else order[keep]


def _offset_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float, num_groups: int) -> Tensor:
    """One NMS call; the groups are laid out on a square grid of image-sized cells, so
    boxes of different groups never overlap. The grid keeps the offsets (and float32
    rounding of the shifted coordinates) at sqrt(num_groups) image sizes, not num_groups."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    columns = math.isqrt(num_groups - 1) + 1
    cell = boxes.max() + 1
    offset_x, offset_y = (groups % columns).to(boxes) * cell, (groups // columns).to(boxes) * cell
    return nms(boxes + torch.stack([offset_x, offset_y, offset_x, offset_y], dim=1), scores, iou_threshold)


def batched_nms_per_image(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    image_index: Tensor,
    iou_threshold: float,
    num_images: int,
    num_groups: int,
    max_per_image: int,
    *,
    candidate: Tensor | None = None,
    group_sizes: list[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """NMS within each (image, group) pair, then the ``max_per_image`` best boxes of each image.

    Candidates of all images share calls (``grouped_nms``); a box only suppresses boxes of
    its own image and group (a pyramid level for proposals, a class for detections).

    Args:
        boxes: ``[K, 4]`` candidate boxes; scores ``[K]``; groups ``[K]`` int64, each in
            ``[0, num_groups)``; image_index ``[K]`` int64, each in ``[0, num_images)``.
        candidate: ``[K]`` bool, False for boxes that must not be returned; they must score
            below every candidate (e.g. ``-inf``), so that they suppress none.
        group_sizes: see ``grouped_nms``, for the keys ``image_index * num_groups + groups``.

    Returns:
        kept ``[num_images, max_per_image]`` int64 indices into K, best first, and
        valid ``[num_images, max_per_image]`` bool, True on a prefix of each row (an image
        may keep fewer). Unused slots hold K itself: index values padded with one extra row
        (``pad_row``).
    """
    keys = image_index * num_groups + groups
    keep = grouped_nms(boxes, scores, keys, iou_threshold, num_images * num_groups, group_sizes)
    # ``keep`` is sorted by descending score; a stable sort by image keeps that order inside each image.
    kept_images, order = torch.sort(image_index[keep], stable=True)
    keep = keep[order]
    first_of_image = torch.searchsorted(kept_images, torch.arange(num_images, device=keep.device))
    rank = torch.arange(keep.numel(), device=keep.device) - first_of_image[kept_images]
    slot = kept_images * max_per_image + rank
    overflow = num_images * max_per_image  # one spare slot collects what is not returned
    returned = rank < max_per_image
    if candidate is not None:
        returned &= candidate[keep]
    slot = torch.where(returned, slot, overflow)
    kept = keep.new_full((overflow + 1,), boxes.shape[0]).scatter_(0, slot, keep)[:overflow]
    valid = torch.zeros(overflow + 1, dtype=torch.bool, device=keep.device).scatter_(0, slot, True)[:overflow]
    return kept.view(num_images, max_per_image), valid.view(num_images, max_per_image)
