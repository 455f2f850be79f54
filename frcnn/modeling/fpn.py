"""Feature Pyramid Network: C2–C5 → P2–P6 (Lin et al., 2017), or any other list of body levels.

P2–P5 come from a top-down pathway with lateral 1×1 convolutions and 3×3 output
convolutions; P6 is a stride-2 subsampling of P5 (torchvision's ``LastLevelMaxPool``, a
max-pool of kernel 1) and feeds only the RPN. MobileNetV3's two levels (both stride 32)
go through the same pathway.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FPN"]


class FPN(nn.Module):
    """Args:
        in_channels: channels of each body level, finest first (ResNet: C2..C5).
        out_channels: channels of every output level.

    Shapes: ``[C2, C3, C4, C5]`` → ``[P2, P3, P4, P5, P6]``, level ``i`` of shape
    ``[N, out_channels, Hi, Wi]`` with P6 half the size of P5 (rounded up).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        for conv in [*self.lateral_convs, *self.output_convs]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        top_down = self.lateral_convs[-1](features[-1])
        outputs = [self.output_convs[-1](top_down)]
        for level in range(len(features) - 2, -1, -1):
            lateral = self.lateral_convs[level](features[level])
            top_down = lateral + F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            outputs.insert(0, self.output_convs[level](top_down))
        # torchvision's max-pool with kernel 1 and stride 2 is this strided view: the same values,
        # without an extra tensor and the int64 indices that the pool saves for backward.
        outputs.append(outputs[-1][..., ::2, ::2])
        return outputs
