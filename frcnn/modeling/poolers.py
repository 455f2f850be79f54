"""Pooling of boxes from a feature pyramid: each box reads the level that suits its size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from frcnn.ops import box_area

__all__ = ["MultiScaleRoIAlign"]


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign from the pyramid level that suits each box's size (FPN paper, eq. 1).

    A box of side ``sqrt(area) = canonical_size`` reads level ``canonical_level``; each
    halving or doubling moves one level down or up, clamped to the available levels.

    Args:
        strides: stride of each level it pools from, the first ``len(strides)`` levels of the
            features given to ``forward`` (R50-FPN: P2–P5, 4, 8, 16, 32; the max-pool level is for the RPN only).
    """

    def __init__(
        self,
        strides: Sequence[int] = (4, 8, 16, 32),
        output_size: int = 7,
        sampling_ratio: int = 2,
        canonical_size: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        self.strides = tuple(strides)
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.canonical_size = canonical_size
        self.canonical_level = canonical_level
        self.min_level = round(math.log2(strides[0]))

    def level_of(self, boxes: Tensor) -> Tensor:
        """Index into the feature list for ``boxes [K, 4]`` → ``[K]`` int64."""
        size = torch.sqrt(box_area(boxes))
        level = torch.floor(self.canonical_level + torch.log2(size / self.canonical_size) + 1e-6)
        level = level.clamp(min=self.min_level, max=self.min_level + len(self.strides) - 1)
        return level.to(torch.int64) - self.min_level

    def forward(self, features: Sequence[Tensor], rois: Tensor) -> Tensor:
        """Pool ``rois [K, 5]`` (image index, x1, y1, x2, y2) → ``[K, channels, out, out]`` from the
        first ``len(strides)`` levels of ``features``."""
        levels = self.level_of(rois[:, 1:])
        order = torch.sort(levels).indices
        counts = torch.zeros(len(self.strides), dtype=torch.int64, device=levels.device)
        counts = counts.scatter_add_(0, levels, torch.ones_like(levels)).tolist()  # the one read from the device
        num_channels = features[0].shape[1]
        pooled = features[0].new_empty((rois.shape[0], num_channels, self.output_size, self.output_size))
        start = 0
        for feature, stride, count in zip(features, self.strides, counts):
            index = order[start : start + count]
            start += count
            if count == 0:
                continue
            pooled_level = roi_align(
                feature, rois[index], self.output_size, 1.0 / stride, self.sampling_ratio, aligned=False
            )
            # index_put_ saves only ``index`` for backward (index_copy_ would save ``pooled_level`` too).
            pooled[index] = pooled_level.to(pooled.dtype)
        return pooled
