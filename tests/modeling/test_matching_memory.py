"""Anchor matching memory does not grow with batch x objects (issue 18): a training forward and a
whole step on 4 images of 800 x 800 px hold as much memory with 40 objects an image as with 2.

A backbone of a few channels keeps the test fast and makes it strict: matching ~270k anchors is
then a large part of the model's memory (one [B, G, A] IoU tensor took 834 MiB more at 40 objects).
"""

import pytest
import torch
from torch import nn

from frcnn.modeling import FasterRCNN
from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.poolers import MultiScaleRoIAlign
from frcnn.modeling.roi_heads import BoxPredictor, RoIHeads, TwoMLPHead
from frcnn.modeling.rpn import RegionProposalNetwork, RPNHead
from frcnn.modeling.transform import ImageTransform
from frcnn.ops.probes import PeakHostMemory

CHANNELS = 16

pytestmark = pytest.mark.skipif(not PeakHostMemory.available(), reason="needs glibc's mallinfo2")


class TinyPyramid(nn.Module):
    """Images [B, 3, H, W] → five levels of CHANNELS at strides 4, 8, 16, 32, 64 (P2–P6's shapes)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, CHANNELS, 4, stride=4)
        self.downs = nn.ModuleList(nn.Conv2d(CHANNELS, CHANNELS, 3, stride=2, padding=1) for _ in range(4))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        levels = [self.stem(images)]
        for down in self.downs:
            levels.append(down(levels[-1]))
        return levels


def peak_mib(num_objects: int) -> tuple[float, float]:
    """(training forward, whole step) peak host memory in MiB, 4 images of 800 x 800 px."""
    torch.manual_seed(0)
    model = FasterRCNN(
        num_classes=3,
        transform=ImageTransform(resize=False),
        backbone=TinyPyramid(),
        anchor_generator=AnchorGenerator([[32], [64], [128], [256], [512]], [[0.5, 1.0, 2.0]] * 5),
        rpn=RegionProposalNetwork(RPNHead(CHANNELS, 3)),
        roi_heads=RoIHeads(MultiScaleRoIAlign([4, 8, 16, 32], 7, 2), TwoMLPHead(CHANNELS, 7, 64), BoxPredictor(64, 3)),
    ).train()
    generator = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 800, 800), dtype=torch.uint8, generator=generator) for _ in range(4)]
    targets = []
    for _ in images:
        corners = torch.rand(num_objects, 2, generator=generator) * 600
        sides = 20 + torch.rand(num_objects, 2, generator=generator) * 180
        labels = torch.randint(1, 3, (num_objects,), generator=generator)
        targets.append({"boxes": torch.cat([corners, corners + sides], dim=1), "labels": labels})
    with PeakHostMemory() as step:
        with PeakHostMemory() as forward:
            losses = model(images, targets)
        sum(losses.values()).backward()
    return forward.peak_bytes / 2**20, step.peak_bytes / 2**20


def test_peak_memory_with_40_objects_is_within_10_percent_of_2():
    forward_few, step_few = peak_mib(2)
    forward_many, step_many = peak_mib(40)
    assert forward_many <= 1.1 * forward_few, (forward_few, forward_many)
    assert step_many <= 1.1 * step_few, (step_few, step_many)
