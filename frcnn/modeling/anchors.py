"""Anchor boxes for every location of every pyramid level.

All images of a batch share one padded size, hence one set of anchors: the generator
returns a single ``[A, 4]`` float32 tensor (also under autocast: half precision cannot
hold pixel coordinates of large images), not one copy per image, and caches it per
padded size. Layout follows torchvision: level-major, then row, column, and for each location
the cell anchors in (aspect ratio, size) order; cell anchors are rounded to integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["AnchorGenerator"]


class AnchorGenerator(nn.Module):
    """Args:
        sizes: anchor sizes per level (sqrt of the area), e.g. ``((32,), (64,), …, (512,))``.
        aspect_ratios: height/width ratios per level, e.g. ``((0.5, 1.0, 2.0),) * 5``.
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[Sequence[float]]) -> None:
        super().__init__()
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"anchor sizes ({len(sizes)} levels) and aspect_ratios ({len(aspect_ratios)}) differ")
        self.cell_anchors = [self.cell_anchors_for(s, r) for s, r in zip(sizes, aspect_ratios)]
        self._cache: dict[tuple, Tensor] = {}

    cache_size = 32  # padded batch shapes remembered; keep-ratio batches take a few dozen

    @staticmethod
    def cell_anchors_for(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> Tensor:
        """Anchors centred on (0, 0): ``[len(aspect_ratios) * len(sizes), 4]``."""
        scales = torch.as_tensor(sizes, dtype=torch.float32)
        ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
        height_ratios = torch.sqrt(ratios)
        width_ratios = 1 / height_ratios
        widths = (width_ratios[:, None] * scales[None, :]).view(-1)
        heights = (height_ratios[:, None] * scales[None, :]).view(-1)
        return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()

    @property
    def num_anchors_per_location(self) -> list[int]:
        return [len(cell) for cell in self.cell_anchors]

    def forward(self, image_size: tuple[int, int], feature_maps: Sequence[Tensor]) -> tuple[Tensor, list[int]]:
        """Anchors for a padded batch of ``image_size`` (H, W) and its ``feature_maps``.

        Returns:
            anchors ``[A, 4]`` over all levels, and the number of anchors on each level.
        """
        grid_sizes = tuple(tuple(f.shape[-2:]) for f in feature_maps)
        device = feature_maps[0].device
        counts = [h * w * len(cell) for (h, w), cell in zip(grid_sizes, self.cell_anchors)]
        if torch.compiler.is_compiling():  # an export's sizes are symbols: nothing to key a cache with
            return self._grid_anchors(image_size, grid_sizes, device), counts
        key = (tuple(image_size), grid_sizes, device)
        anchors = self._cache.pop(key, None)
        if anchors is None:
            anchors = self._grid_anchors(image_size, grid_sizes, device)
        self._cache[key] = anchors  # most recently used last
        if len(self._cache) > self.cache_size:
            del self._cache[next(iter(self._cache))]
        return anchors, counts

    def _grid_anchors(self, image_size, grid_sizes, device) -> Tensor:
        per_level = []
        for (height, width), cell in zip(grid_sizes, self.cell_anchors):
            stride_y, stride_x = image_size[0] // height, image_size[1] // width
            shifts_x = torch.arange(width, device=device, dtype=torch.float32) * stride_x
            shifts_y = torch.arange(height, device=device, dtype=torch.float32) * stride_y
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)
            per_level.append((shifts + cell.to(device)[None]).reshape(-1, 4))
        return torch.cat(per_level)
