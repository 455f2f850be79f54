"""frcnn.modeling.anchors: cell anchors and their grid, by hand."""

import torch

from frcnn.modeling.anchors import AnchorGenerator


def test_anchors_of_a_tiny_feature_map():
    generator = AnchorGenerator(sizes=[(32,)], aspect_ratios=[(0.5, 1.0, 2.0)])
    anchors, counts = generator((64, 64), [torch.zeros(1, 8, 2, 2)])
    # ratio 0.5: w = 32·√2 = 45.25, h = 32/√2 = 22.63 → half sizes rounded (23, 11); ratio 2 transposed.
    cell = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]])
    shifts = torch.tensor([[0.0, 0.0], [32.0, 0.0], [0.0, 32.0], [32.0, 32.0]])  # row-major (y, then x), stride 32
    expected = (cell[None] + shifts.repeat(1, 2)[:, None]).reshape(-1, 4)
    assert counts == [12]
    assert torch.equal(anchors, expected)


def test_anchor_levels_are_concatenated_in_order():
    generator = AnchorGenerator(sizes=[(32,), (64,)], aspect_ratios=[(1.0,), (1.0,)])
    anchors, counts = generator((64, 64), [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)])
    assert counts == [16, 4]
    assert torch.equal(anchors[16], torch.tensor([-32.0, -32.0, 32.0, 32.0]))  # first anchor of level 2
    assert torch.equal(anchors[1], torch.tensor([0.0, -16.0, 32.0, 16.0]))  # second location of level 1: x = 16
