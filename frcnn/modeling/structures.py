"""Padded batch containers passed between the stages.

Shorthand used in shapes across ``frcnn.modeling``: B images per batch, G ground-truth
boxes per image (padded to the batch maximum), A anchors, P proposals per image,
C classes including background (label 0),
S sampled anchors or proposals per image.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["GroundTruth", "ImageBatch", "Proposals", "Samples"]


class ImageBatch(NamedTuple):
    """Normalised images padded to one size, and where each image lies in it."""

    tensor: Tensor  # [B, 3, H, W] float, zero padding at the bottom and right
    image_sizes: Tensor  # [B, 2] int64 (height, width) of each image inside ``tensor``


class GroundTruth(NamedTuple):
    """Ground truth of a batch in the coordinates of ``ImageBatch``, padded to G >= 1 per image."""

    boxes: Tensor  # [B, G, 4] xyxy
    labels: Tensor  # [B, G] int64 in 1..C-1 (0 on padding)
    valid: Tensor  # [B, G] bool, False on padding


class Proposals(NamedTuple):
    """RPN output, best first, padded to P per image."""

    boxes: Tensor  # [B, P, 4] xyxy
    scores: Tensor  # [B, P] objectness probability
    valid: Tensor  # [B, P] bool, False on padding


class Samples(NamedTuple):
    """Anchors or proposals sampled for the losses, with their targets, padded to S per image."""

    index: Tensor  # [B, S] int64 into the candidates (anchors, or proposals + ground truth)
    valid: Tensor  # [B, S] bool, False on unused slots
    labels: Tensor  # [B, S] int64: matched class, 0 for background (and on unused slots)
    boxes: Tensor  # [B, S, 4] xyxy of the sampled candidates
    target_deltas: Tensor  # [B, S, 4] regression targets, 0 where not positive

    def positives_per_image(self) -> Tensor:
        """Sampled objects (label > 0) per image, averaged over the batch: a float scalar, detached."""
        return (self.valid & (self.labels > 0)).sum().detach() / self.valid.shape[0]
