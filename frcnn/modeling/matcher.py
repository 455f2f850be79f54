"""Matches predicted boxes (anchors or proposals) to ground-truth boxes by IoU."""

from __future__ import annotations

import torch
from torch import Tensor

from frcnn.modeling.structures import GroundTruth
from frcnn.ops.boxes import pairwise_iou

__all__ = ["Matcher", "label_by_matching"]


class Matcher:
    """Assigns each prediction the ground truth it overlaps most, or marks it background/ignored.

    A prediction whose best IoU is ``>= high_threshold`` is matched; below ``low_threshold``
    it is background (``BELOW_LOW_THRESHOLD``); in between it is ignored
    (``BETWEEN_THRESHOLDS``). With ``allow_low_quality_matches`` every ground truth also
    keeps the predictions that overlap it most, even below ``high_threshold`` (Faster
    R-CNN's RPN rule; ties all count, as in torchvision).
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(f"low_threshold={low_threshold} must not exceed high_threshold={high_threshold}")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, quality: Tensor) -> Tensor:
        """Match a batch.

        Args:
            quality: IoU ``[B, G, N]`` between G ground truths and N predictions per image;
                rows that pad an image's ground truths must hold a negative value.

        Returns:
            matches ``[B, N]`` int64: the matched ground-truth index, or a negative code.
        """
        num_images, _, num_predictions = quality.shape
        if quality.shape[1] == 0:
            return quality.new_full((num_images, num_predictions), self.BELOW_LOW_THRESHOLD, dtype=torch.int64)
        best_quality, best_gt = quality.max(dim=1)
        matches = best_gt.clone()
        matches[best_quality < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        between = (best_quality >= self.low_threshold) & (best_quality < self.high_threshold)
        matches[between] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            best_per_gt = quality.max(dim=2, keepdim=True).values
            is_best_for_some_gt = ((quality == best_per_gt) & (best_per_gt >= 0)).any(dim=1)
            matches = torch.where(is_best_for_some_gt, best_gt, matches)
        return matches


def label_by_matching(matcher: Matcher, gt: GroundTruth, candidates: Tensor) -> tuple[Tensor, Tensor]:
    """Class label and matched ground truth for every candidate box of a batch.

    Args:
        gt: padded ground truth, ``boxes [B, G, 4]`` with G >= 1.
        candidates: ``[B, N, 4]``, or ``[N, 4]`` shared by all images (anchors).

    Returns:
        labels ``[B, N]`` int64: the matched box's class, 0 for background, -1 to ignore;
        matched_boxes ``[B, N, 4]``: the matched ground-truth box (meaningful where labels > 0).
    """
    quality = pairwise_iou(gt.boxes, candidates).masked_fill_(~gt.valid[:, :, None], -1.0)
    matches = matcher(quality)
    matched = matches.clamp(min=0)
    labels = gt.labels.gather(1, matched)
    labels = labels.masked_fill(matches == Matcher.BELOW_LOW_THRESHOLD, 0)
    labels = labels.masked_fill(matches == Matcher.BETWEEN_THRESHOLDS, -1)
    matched_boxes = gt.boxes.gather(1, matched[..., None].expand(-1, -1, 4))
    return labels, matched_boxes
