"""frcnn.ops.boxes: the box coder by hand, IoU and clipping against torchvision."""

import math

import pytest
import torch
from torchvision.ops import box_iou, clip_boxes_to_image

from frcnn.ops import BoxCoder, clip_boxes, pairwise_iou


def test_box_coder_hand_case_and_round_trip():
    reference = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[5.0, 0.0, 25.0, 10.0]])  # centre moves 10 px right, width doubles
    assert torch.allclose(BoxCoder((1, 1, 1, 1)).encode(gt, reference), torch.tensor([[1.0, 0.0, math.log(2), 0.0]]))
    coder = BoxCoder((10, 10, 5, 5))
    assert torch.allclose(coder.encode(gt, reference), torch.tensor([[10.0, 0.0, 5 * math.log(2), 0.0]]))

    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 50, 2, generator=generator) * 100
    boxes = torch.cat([xy, xy + 1 + torch.rand(2, 50, 2, generator=generator) * 50], dim=-1)
    references = torch.cat([xy + 3, xy + 20 + torch.rand(2, 50, 2, generator=generator) * 50], dim=-1)
    decoded = coder.decode(coder.encode(boxes, references), references).squeeze(-2)
    torch.testing.assert_close(decoded, boxes, atol=1e-4, rtol=0)


def test_box_coder_decodes_per_class_and_clamps_sizes():
    coder = BoxCoder((1, 1, 1, 1))
    reference = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 0.0]])  # 2 classes; class 1 wants exp(100)
    decoded = coder.decode(deltas, reference)
    assert decoded.shape == (1, 2, 4)
    assert torch.equal(decoded[0, 0], reference[0])
    assert decoded[0, 1, 2] - decoded[0, 1, 0] == pytest.approx(1000.0, rel=1e-5)  # clamped at log(1000/16)


def test_pairwise_iou_and_clip_match_torchvision():
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(3, 7, 2, generator=generator) * 50
    boxes = torch.cat([xy, xy + 1 + torch.rand(3, 7, 2, generator=generator) * 60], dim=-1)
    for image in range(3):
        torch.testing.assert_close(pairwise_iou(boxes, boxes[:, :4])[image], box_iou(boxes[image], boxes[image, :4]))
    assert pairwise_iou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]])).item() == pytest.approx(1 / 7)
    sizes = torch.tensor([[40, 30], [60, 70], [20, 20]])
    clipped = clip_boxes(boxes, sizes)
    for image, (height, width) in enumerate(sizes.tolist()):
        assert torch.equal(clipped[image], clip_boxes_to_image(boxes[image], (height, width)))
