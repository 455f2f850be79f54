"""frcnn.modeling.matcher: IoU thresholds and low-quality matches, against torchvision and by hand."""

import torch
from torchvision.models.detection._utils import Matcher as TorchvisionMatcher

from frcnn.modeling import matcher as matcher_module
from frcnn.modeling.matcher import Matcher, label_by_matching, match_image
from frcnn.ops import pairwise_iou
from frcnn.modeling.structures import GroundTruth


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


def test_matching_in_chunks_equals_matching_at_once(monkeypatch):
    """Ground truths against 3,000 candidates in blocks of 7 x 64 IoUs give the matches (low-quality
    ones too, which need each ground truth's best over every chunk) of one [G, N] matrix."""
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(3000, 2, generator=generator) * 200
    candidates = torch.cat([xy, xy + 4 + torch.rand(3000, 2, generator=generator) * 60], 1)
    gt_boxes = candidates[torch.randperm(3000, generator=generator)[:7]] + torch.rand(7, 4, generator=generator) * 8
    gt_valid = torch.tensor([True] * 6 + [False])
    for matcher in (Matcher(0.7, 0.3, allow_low_quality_matches=True), Matcher(0.5, 0.5)):
        whole = matcher(pairwise_iou(gt_boxes, candidates).masked_fill_(~gt_valid[:, None], -1.0))
        monkeypatch.setattr(matcher_module, "IOU_BLOCK", 7 * 64)
        assert torch.equal(match_image(matcher, gt_boxes, gt_valid, candidates), whole)
        monkeypatch.undo()
