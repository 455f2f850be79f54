"""frcnn.modeling.poolers: level assignment by hand, pooling against torchvision's MultiScaleRoIAlign."""

import torch
from torchvision.ops import MultiScaleRoIAlign as TorchvisionRoIAlign

from frcnn.modeling.poolers import MultiScaleRoIAlign


def test_roi_levels_by_hand_and_pooling_matches_torchvision():
    pooler = MultiScaleRoIAlign()
    boxes = torch.tensor([[0.0, 0.0, 224.0, 224.0], [0.0, 0.0, 112.0, 112.0], [0.0, 0.0, 10.0, 10.0], [0, 0, 900.0, 900.0]])
    assert pooler.level_of(boxes).tolist() == [2, 1, 0, 3]  # P4, P3, P2 (clamped), P5 (clamped)

    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(2, 4, 256 // s, 320 // s, generator=generator) for s in (4, 8, 16, 32)]
    xy = torch.rand(2, 30, 2, generator=generator) * 150
    proposals = torch.cat([xy, xy + 2 + torch.rand(2, 30, 2, generator=generator) * 150], dim=-1)
    rois = torch.cat([torch.arange(2.0).repeat_interleave(30)[:, None], proposals.flatten(0, 1)], dim=1)
    oracle = TorchvisionRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
    expected = oracle({str(i): f for i, f in enumerate(features)}, list(proposals), [(256, 320), (256, 320)])
    torch.testing.assert_close(pooler(features, rois), expected)
