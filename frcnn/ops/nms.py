"""Non-maximum suppression for a whole batch in one call, packed into fixed-size outputs."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

__all__ = ["batched_nms_per_image", "pad_row"]


def pad_row(values: Tensor) -> Tensor:
    """``values [K, ...]`` with a row of zeros appended: ``[K + 1, ...]``."""
    return torch.cat([values, values.new_zeros((1, *values.shape[1:]))])


def batched_nms_per_image(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    image_index: Tensor,
    iou_threshold: float,
    num_images: int,
    num_groups: int,
    max_per_image: int,
) -> tuple[Tensor, Tensor]:
    """NMS within each (image, group) pair, then the ``max_per_image`` best boxes of each image.

    Candidates of all images are flattened into one list so that one ``batched_nms`` call
    serves the batch; a box only suppresses boxes of its own image and group (a pyramid
    level for proposals, a class for detections).

    Args:
        boxes: ``[K, 4]`` candidate boxes; scores ``[K]``; groups ``[K]`` int64, each in
            ``[0, num_groups)``; image_index ``[K]`` int64, each in ``[0, num_images)``.

    Returns:
        kept ``[num_images, max_per_image]`` int64 indices into K, best first, and
        valid ``[num_images, max_per_image]`` bool (False where an image keeps fewer).
        Unused slots hold K itself: index values padded with one extra row (``pad_row``).
    """
    keep = batched_nms(boxes, scores, image_index * num_groups + groups, iou_threshold)
    # ``keep`` is sorted by descending score; a stable sort by image keeps that order inside each image.
    kept_images, order = torch.sort(image_index[keep], stable=True)
    keep = keep[order]
    counts = torch.bincount(kept_images, minlength=num_images)
    first_of_image = torch.cumsum(counts, 0) - counts
    rank = torch.arange(keep.numel(), device=keep.device) - first_of_image[kept_images]
    slot = kept_images * max_per_image + rank
    overflow = num_images * max_per_image  # one spare slot collects what exceeds max_per_image
    slot = torch.where(rank < max_per_image, slot, overflow)
    kept = keep.new_full((overflow + 1,), boxes.shape[0]).scatter_(0, slot, keep)[:overflow]
    valid = torch.zeros(overflow + 1, dtype=torch.bool, device=keep.device).scatter_(0, slot, True)[:overflow]
    return kept.view(num_images, max_per_image), valid.view(num_images, max_per_image)
