"""frcnn.modeling.fpn: output levels and shapes."""

import torch

from frcnn.modeling.fpn import FPN


def test_fpn_shapes():
    features = [torch.zeros(1, c, 64 // s, 96 // s) for c, s in ((8, 4), (16, 8), (32, 16), (64, 32))]
    outputs = FPN([8, 16, 32, 64], 4)(features)
    assert [tuple(o.shape[-2:]) for o in outputs] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(o.shape[1] == 4 for o in outputs)
