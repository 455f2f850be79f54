"""Each stage against a case computed by hand, or against torchvision's own op."""

import math

import pytest
import torch
from torchvision.models.detection._utils import Matcher as TorchvisionMatcher
from torchvision.ops import MultiScaleRoIAlign as TorchvisionRoIAlign
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.fpn import FPN
from frcnn.modeling.matcher import Matcher, label_by_matching
from frcnn.modeling.roi_heads import MultiScaleRoIAlign
from frcnn.modeling.sampler import BalancedSampler
from frcnn.modeling.structures import GroundTruth
from frcnn.modeling.transform import ImageTransform
from frcnn.ops import BoxCoder, batched_nms_per_image, clip_boxes, pairwise_iou


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


def test_matcher_with_low_quality_matches_by_hand():
    quality = torch.tensor([[
        [0.9, 0.4, 0.1, 0.0, 0.2],
        [0.2, 0.6, 0.6, 0.0, 0.35],
        [-1.0, -1.0, -1.0, -1.0, -1.0],  # padding: must match nothing, not even as a low-quality match
    ]])
    matches = Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality)
    # 0: IoU 0.9 ≥ 0.7 → gt 0. 1 and 2: 0.6 is gt 1's best (a tie) → both kept as low-quality matches.
    # 3: below 0.3 → background. 4: 0.35 is between the thresholds → ignored.
    assert matches.tolist() == [[0, 1, 1, Matcher.BELOW_LOW_THRESHOLD, Matcher.BETWEEN_THRESHOLDS]]
    assert Matcher(0.7, 0.3)(quality).tolist() == [[0, -2, -2, -1, -2]]
    oracle = TorchvisionMatcher(0.7, 0.3, allow_low_quality_matches=True)
    assert torch.equal(matches[0], oracle(quality[0, :2].clone()))


def test_label_by_matching_marks_background_and_ignored():
    gt = GroundTruth(
        boxes=torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]], [[0.0] * 4, [0.0] * 4]]),
        labels=torch.tensor([[5, 0], [0, 0]]),
        valid=torch.tensor([[True, False], [False, False]]),  # the second image has no objects
    )
    candidates = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [50.0, 50.0, 60.0, 60.0]])
    labels, matched = label_by_matching(Matcher(0.7, 0.3), gt, candidates)
    assert labels.tolist() == [[5, -1, 0], [0, 0, 0]]  # IoU 1 → class 5; 0.5 → ignored; 0 → background
    assert torch.equal(matched[0, 0], gt.boxes[0, 0])


def test_sampler_counts():
    labels = torch.full((3, 200), -1)
    labels[0, :10], labels[0, 10:110] = 1, 0  # plenty of both
    labels[1, :3], labels[1, 3:110] = 2, 0  # few positives: negatives fill the budget
    labels[2, :5], labels[2, 5:9] = 1, 0  # fewer candidates than the budget
    sampled, valid = BalancedSampler(32, 0.25)(labels)
    picked = labels.gather(1, sampled)
    assert sampled.shape == (3, 32)
    assert [int(((picked > 0) & valid)[i].sum()) for i in range(3)] == [8, 3, 5]
    assert [int(((picked == 0) & valid)[i].sum()) for i in range(3)] == [24, 29, 4]
    assert not (valid & (picked < 0)).any(), "ignored entries are never sampled"
    for row, row_valid in zip(sampled, valid):
        assert len(set(row[row_valid].tolist())) == int(row_valid.sum()), "no entry twice"
    torch.manual_seed(1)
    first = BalancedSampler(32, 0.25)(labels)[0]
    assert not torch.equal(first, BalancedSampler(32, 0.25)(labels)[0]), "draws are random"


def test_batched_nms_per_image_matches_per_image_nms():
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=generator) * 40
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=generator) * 20], dim=1)
    scores = torch.rand(60, generator=generator)
    groups = torch.randint(0, 3, (60,), generator=generator)
    image_index = torch.arange(60) % 2
    kept, valid = batched_nms_per_image(boxes, scores, groups, image_index, 0.5, num_images=3, num_groups=3, max_per_image=8)
    for image in range(2):
        mine = torch.nonzero(image_index == image).squeeze(1)
        expected = mine[batched_nms(boxes[mine], scores[mine], groups[mine], 0.5)][:8]
        assert torch.equal(kept[image][valid[image]], expected)
    assert not valid[2].any() and (kept[2] == 60).all(), "an image without candidates points at the pad row"


def test_fpn_shapes():
    features = [torch.zeros(1, c, 64 // s, 96 // s) for c, s in ((8, 4), (16, 8), (32, 16), (64, 32))]
    outputs = FPN([8, 16, 32, 64], 4)(features)
    assert [tuple(o.shape[-2:]) for o in outputs] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(o.shape[1] == 4 for o in outputs)


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


def test_transform_resizes_pads_and_maps_back():
    transform = ImageTransform(min_size=50, max_size=80)
    images = [torch.zeros(3, 100, 200, dtype=torch.uint8), torch.zeros(3, 60, 60, dtype=torch.uint8)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 110.0, 90.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    batch, gt = transform(images, targets)
    # 100×200: min(50/100, 80/200) = 0.4 → 40×80; 60×60 → 50×50. Padded to multiples of 32.
    assert batch.image_sizes.tolist() == [[40, 80], [50, 50]]
    assert batch.tensor.shape == (2, 3, 64, 96)
    assert torch.equal(batch.tensor[1, :, 50:], torch.zeros(3, 14, 96)), "padding is zero after normalisation"
    torch.testing.assert_close(gt.boxes[0, 0], torch.tensor([4.0, 8.0, 44.0, 36.0]))
    assert gt.valid.tolist() == [[True], [False]]
    original = torch.tensor([[100, 200], [60, 60]])
    torch.testing.assert_close(transform.map_back(gt.boxes, batch, original)[0], targets[0]["boxes"])


def test_transform_normalises_uint8_and_float_alike():
    transform = ImageTransform(resize=False)
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    from_uint8, _ = transform([image])
    from_float, _ = transform([image.float() / 255])
    torch.testing.assert_close(from_uint8.tensor, from_float.tensor)
    assert from_uint8.tensor.shape == (1, 3, 32, 32)
    expected = (image[0, 0, 0] / 255 - 0.485) / 0.229
    assert from_uint8.tensor[0, 0, 0, 0].item() == pytest.approx(expected.item(), rel=1e-6)
