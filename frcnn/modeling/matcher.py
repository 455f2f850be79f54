"""Matches predicted boxes (anchors or proposals) to ground-truth boxes by IoU."""

from __future__ import annotations

import torch
from torch import Tensor

from frcnn.modeling.structures import GroundTruth
from frcnn.ops.boxes import pairwise_iou

__all__ = ["IOU_BLOCK", "Matcher", "label_by_matching", "match_image"]

# The largest IoU block built at once, in elements (4 MiB of float32): an image's candidates are
# matched in chunks of IOU_BLOCK // G, so memory grows with neither the batch nor the objects.
IOU_BLOCK = 2**20


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

    def __call__(self, quality: Tensor, best_per_gt: Tensor | None = None) -> Tensor:
        """Match one image, or a batch.

        Args:
            quality: IoU ``[G, N]`` (or ``[B, G, N]``) between G ground truths and N predictions;
                rows that pad an image's ground truths must hold a negative value.
            best_per_gt: ``[G]`` (``[B, G]``) each ground truth's best quality over all its
                predictions, when ``quality`` holds only some of them (a chunk); None: from ``quality``.

        Returns:
            matches ``[N]`` (or ``[B, N]``) int64: the matched ground-truth index, or a negative code.
        """
        if quality.shape[-2] == 0:
            return quality.new_full(quality.shape[:-2] + quality.shape[-1:], self.BELOW_LOW_THRESHOLD, dtype=torch.int64)
        best_quality, best_gt = quality.max(dim=-2)
        matches = best_gt.clone()
        matches[best_quality < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        between = (best_quality >= self.low_threshold) & (best_quality < self.high_threshold)
        matches[between] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            best_per_gt = quality.max(dim=-1).values if best_per_gt is None else best_per_gt
            best_per_gt = best_per_gt[..., None]
            is_best_for_some_gt = ((quality == best_per_gt) & (best_per_gt >= 0)).any(dim=-2)
            matches = torch.where(is_best_for_some_gt, best_gt, matches)
        return matches


def label_by_matching(matcher: Matcher, gt: GroundTruth, candidates: Tensor) -> tuple[Tensor, Tensor]:
    """Class label and matched ground truth for every candidate box of a batch.

    Images are matched one at a time (as torchvision and Detectron2 do) and each image's
    candidates in chunks (`match_image`): memory does not grow with B x G x N (N is ~270k
    anchors at 800x1344). The loops run a few times per image with no host synchronisation.

    Args:
        gt: padded ground truth, ``boxes [B, G, 4]`` with G >= 1.
        candidates: ``[B, N, 4]``, or ``[N, 4]`` shared by all images (anchors).

    Returns:
        labels ``[B, N]`` int64: the matched box's class, 0 for background, -1 to ignore;
        matched_boxes ``[B, N, 4]``: the matched ground-truth box (meaningful where labels > 0).
    """
    per_image = candidates if candidates.dim() == 3 else [candidates] * len(gt.boxes)
    matches = torch.stack([match_image(matcher, *image) for image in zip(gt.boxes, gt.valid, per_image)])
    matched = matches.clamp(min=0)
    labels = gt.labels.gather(1, matched)
    labels = labels.masked_fill(matches == Matcher.BELOW_LOW_THRESHOLD, 0)
    labels = labels.masked_fill(matches == Matcher.BETWEEN_THRESHOLDS, -1)
    matched_boxes = gt.boxes.gather(1, matched[..., None].expand(-1, -1, 4))
    return labels, matched_boxes


def match_image(matcher: Matcher, gt_boxes: Tensor, gt_valid: Tensor, candidates: Tensor) -> Tensor:
    """``matcher``'s matches ``[N]`` for one image: ``gt_boxes [G, 4]`` (``gt_valid [G]`` marks the
    real ones) against ``candidates [N, 4]``, with IoU blocks of at most ``IOU_BLOCK`` elements."""
    chunks = candidates.split(max(1, IOU_BLOCK // len(gt_boxes)))

    def quality(chunk: Tensor) -> Tensor:
        return pairwise_iou(gt_boxes, chunk).masked_fill_(~gt_valid[:, None], -1.0)

    if len(chunks) == 1:
        return matcher(quality(candidates))
    best_per_gt = None
    if matcher.allow_low_quality_matches:  # a first pass: each ground truth's best over all chunks
        best_per_gt = torch.stack([quality(chunk).max(dim=1).values for chunk in chunks], dim=1).max(dim=1).values
    return torch.cat([matcher(quality(chunk), best_per_gt) for chunk in chunks])
