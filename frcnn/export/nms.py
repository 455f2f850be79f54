"""Non-maximum suppression as ONNX's ``NonMaxSuppression`` computes it: a custom op for the export.

ONNX's operator runs NMS for every (image, class) pair of a padded batch at once and drops
boxes at or below a score threshold first. ``frcnn_export::nms`` has those semantics with
the threshold fixed at "any finite score", so that padded candidates score ``-inf`` and
cost nothing; the export translates it into that one ONNX node. Eager PyTorch runs it
with ``torchvision.ops.nms`` per pair (the same suppression rule: IoU strictly above the
threshold), which is what the export's equality tests compare against.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms as torchvision_nms

__all__ = ["nms"]


@torch.library.custom_op("frcnn_export::nms", mutates_args=())
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the boxes NMS keeps in each (image, class) pair.

    Args:
        boxes: ``[B, N, 4]`` xyxy, shared by the classes of an image.
        scores: ``[B, G, N]``; ``-inf`` marks a box that is no candidate of that class.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box exceeds this.

    Returns:
        ``[S, 3]`` int64 rows (image, class, box), by image, then class, then decreasing score.
    """
    selected = []
    for image in range(scores.shape[0]):
        for group in range(scores.shape[1]):
            index = torch.nonzero(scores[image, group] > float("-inf")).squeeze(1)
            keep = index[torchvision_nms(boxes[image, index], scores[image, group, index], iou_threshold)]
            selected.append(torch.stack([torch.full_like(keep, image), torch.full_like(keep, group), keep], dim=1))
    if not selected:
        return torch.empty((0, 3), dtype=torch.int64, device=boxes.device)
    return torch.cat(selected)


@nms.register_fake
def _(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    count = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((count, 3), dtype=torch.int64)
