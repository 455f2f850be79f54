"""Boxes from a resized image back to the original one: the one place that does it.

Used by the model (its batch frame -> each input image), by ``evaluate.py`` and validation
(the data module's resized images -> the stored images) and by ``frcnn.Detector``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_original_pixels(boxes: Tensor, size: Tensor, orig_size: Tensor) -> Tensor:
    """Scale ``xyxy`` boxes drawn on images of ``size`` to images of ``orig_size``.

    Args:
        boxes (Tensor[..., K, 4]): one image's boxes ``[K, 4]`` or a batch's ``[B, K, 4]``.
        size (Tensor[..., 2]): (H, W) of the image(s) the boxes are in; ``[2]`` or ``[B, 2]``.
        orig_size (Tensor[..., 2]): (H0, W0) of the original image(s), same shape as ``size``.

    Returns:
        Tensor[..., K, 4]: ``x * W0 / W`` and ``y * H0 / H``, on ``boxes``' device, no host sync.
    """
    size = torch.as_tensor(size, device=boxes.device)
    orig_size = torch.as_tensor(orig_size, device=boxes.device)
    ratio = orig_size.to(torch.float64) / size.to(torch.float64)  # (h, w); float64 as Python's division
    return boxes * ratio[..., None, [1, 0, 1, 0]].to(boxes.dtype)
