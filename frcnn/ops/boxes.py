"""Box geometry on batched tensors.

Boxes are ``(x1, y1, x2, y2)`` in absolute pixels everywhere in the package. Functions
accept any number of leading dimensions (``[..., 4]``) so that one call serves a whole
batch; the formulas follow ``torchvision.ops.boxes`` and torchvision's ``BoxCoder``
operation for operation, so results match the reference bit for bit on the same inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["BoxCoder", "box_area", "pairwise_iou", "clip_boxes", "nonempty_boxes"]


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``boxes [..., 4]`` → ``[...]``."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def pairwise_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair: ``boxes1 [B, N, 4]``, ``boxes2 [B, M, 4]`` → ``[B, N, M]``.

    Also works without the batch dimension (``[N, 4]``, ``[M, 4]`` → ``[N, M]``). Pairs of
    zero-area boxes give NaN; callers mask padding before reading such entries. Widths and
    heights of the overlaps are formed one coordinate at a time, so at most four ``[.., N, M]``
    tensors are alive at once (anchor matching builds one per image with M ~ 270k).
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    overlap = []
    for low, high in ((0, 2), (1, 3)):
        far_start = torch.max(boxes1[..., :, None, low], boxes2[..., None, :, low])
        near_end = torch.min(boxes1[..., :, None, high], boxes2[..., None, :, high])
        overlap.append((near_end - far_start).clamp(min=0))
        del far_start, near_end
    inter = overlap[0] * overlap[1]
    del overlap
    return inter / (area1[..., :, None] + area2[..., None, :] - inter)


def clip_boxes(boxes: Tensor, image_sizes: Tensor) -> Tensor:
    """Clip ``boxes [B, ..., 4]`` to their image: ``image_sizes [B, 2]`` holds (height, width)."""
    view = (image_sizes.shape[0],) + (1,) * (boxes.dim() - 2)
    height = image_sizes[:, 0].view(view).to(boxes.dtype)
    width = image_sizes[:, 1].view(view).to(boxes.dtype)
    zero = torch.zeros((), dtype=boxes.dtype, device=boxes.device)
    x = boxes[..., 0::2].clamp(min=zero).minimum(width[..., None])
    y = boxes[..., 1::2].clamp(min=zero).minimum(height[..., None])
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def nonempty_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Mask ``[...]`` of ``boxes [..., 4]`` whose width and height are both ``>= min_size``."""
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return (widths >= min_size) & (heights >= min_size)


class BoxCoder:
    """Encodes boxes as deltas ``(dx, dy, dw, dh)`` relative to reference boxes, and back.

    ``weights`` scale the deltas (1, 1, 1, 1 for the RPN; 10, 10, 5, 5 for the box head);
    ``scale_clamp`` bounds ``dw, dh`` before ``exp`` so a wild prediction cannot overflow.
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float],
        scale_clamp: float = math.log(1000.0 / 16),
    ) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, gt_boxes: Tensor, reference_boxes: Tensor) -> Tensor:
        """Deltas that move ``reference_boxes [..., 4]`` onto ``gt_boxes [..., 4]`` → ``[..., 4]``."""
        wx, wy, ww, wh = self.weights
        ref_widths = reference_boxes[..., 2] - reference_boxes[..., 0]
        ref_heights = reference_boxes[..., 3] - reference_boxes[..., 1]
        ref_ctr_x = reference_boxes[..., 0] + 0.5 * ref_widths
        ref_ctr_y = reference_boxes[..., 1] + 0.5 * ref_heights

        gt_widths = gt_boxes[..., 2] - gt_boxes[..., 0]
        gt_heights = gt_boxes[..., 3] - gt_boxes[..., 1]
        gt_ctr_x = gt_boxes[..., 0] + 0.5 * gt_widths
        gt_ctr_y = gt_boxes[..., 1] + 0.5 * gt_heights

        dx = wx * (gt_ctr_x - ref_ctr_x) / ref_widths
        dy = wy * (gt_ctr_y - ref_ctr_y) / ref_heights
        dw = ww * torch.log(gt_widths / ref_widths)
        dh = wh * torch.log(gt_heights / ref_heights)
        return torch.stack((dx, dy, dw, dh), dim=-1)

    def decode(self, deltas: Tensor, reference_boxes: Tensor) -> Tensor:
        """Apply ``deltas [..., K*4]`` to ``reference_boxes [..., 4]`` → boxes ``[..., K, 4]``.

        ``K`` is 1 for class-agnostic deltas and the number of classes for per-class ones.
        """
        reference_boxes = reference_boxes.to(deltas.dtype)
        deltas = deltas.unflatten(-1, (-1, 4))
        wx, wy, ww, wh = self.weights
        widths = (reference_boxes[..., 2] - reference_boxes[..., 0])[..., None]
        heights = (reference_boxes[..., 3] - reference_boxes[..., 1])[..., None]
        ctr_x = reference_boxes[..., 0, None] + 0.5 * widths
        ctr_y = reference_boxes[..., 1, None] + 0.5 * heights

        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.scale_clamp)

        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        half_w = 0.5 * (torch.exp(dw) * widths)
        half_h = 0.5 * (torch.exp(dh) * heights)
        return torch.stack(
            (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=-1
        )
