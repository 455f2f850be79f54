"""Box head: RoIAlign on the pyramid → two FC layers → class scores and per-class deltas.

``RoIHeads`` runs in steps: ``label_and_sample_proposals`` (training) matches the proposals,
plus the ground-truth boxes themselves, and samples a fixed number per image; ``predict``
runs the head network on boxes; ``losses`` (training) scores its outputs against the samples;
``postprocess`` (evaluation) turns them into at most ``detections_per_img`` boxes per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frcnn.modeling.matcher import Matcher, label_by_matching
from frcnn.modeling.sampler import BalancedSampler
from frcnn.modeling.structures import GroundTruth, Proposals, Samples
from frcnn.ops import BoxCoder, batched_nms_per_image, clip_boxes, nonempty_boxes, pad_row

__all__ = ["BoxPredictor", "Detections", "RoIHeads", "TwoMLPHead"]


class Detections(NamedTuple):
    """Final detections of a batch, best first, padded to D per image."""

    boxes: Tensor  # [B, D, 4] xyxy
    scores: Tensor  # [B, D]
    labels: Tensor  # [B, D] int64 in 1..C-1
    valid: Tensor  # [B, D] bool


class TwoMLPHead(nn.Module):
    """Flatten pooled features and apply fc6 → ReLU → fc7 → ReLU: ``[K, C, r, r]`` → ``[K, dim]``.

    Args:
        in_channels: C, the pyramid's channels; resolution: r, the pooler's output size.
    """

    def __init__(self, in_channels: int, resolution: int = 7, representation_size: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels * resolution**2, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, pooled: Tensor) -> Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(pooled.flatten(1)))))


class BoxPredictor(nn.Module):
    """Class logits ``[K, C]`` and per-class box deltas ``[K, C*4]`` from ``[K, dim]``."""

    def __init__(self, representation_size: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_score = nn.Linear(representation_size, num_classes)
        self.bbox_pred = nn.Linear(representation_size, num_classes * 4)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(features), self.bbox_pred(features)


class RoIHeads(nn.Module):
    """Args (torchvision's names and defaults):
        pooler, box_head, box_predictor: the three layers of the head.
        fg_iou_thresh, bg_iou_thresh: proposals with IoU >= fg take the object's class,
            < bg are background (no low-quality matches).
        batch_size_per_image, positive_fraction: proposals sampled per image for the losses.
        bbox_reg_weights: deltas ↔ boxes weights (x, y, w, h).
        score_thresh, nms_thresh, detections_per_img: post-processing in evaluation.
        min_size: detections narrower or lower than this (pixels) are dropped.
    """

    def __init__(
        self,
        pooler: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        *,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        min_size: float = 1e-2,
    ) -> None:
        super().__init__()
        self.pooler = pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(tuple(bbox_reg_weights))
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.min_size = min_size
        # Set by each training forward: foreground proposals sampled per image (detached, never a loss).
        self.training_stats: dict[str, Tensor] = {}

    def forward(
        self,
        features: Sequence[Tensor],
        proposals: Proposals,
        image_sizes: Tensor,
        gt: GroundTruth | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Detections | None, dict[str, Tensor]]:
        """Losses when ``gt`` is given (training), otherwise detections.

        Args:
            features: pyramid levels (the pooler reads its own); proposals: ``[B, P, 4]``; image_sizes: ``[B, 2]`` (height, width).
            generator: the proposal sampler's random stream (None: torch's global one).
        """
        if gt is not None:
            samples = self.label_and_sample_proposals(proposals, gt, generator)
            self.training_stats = {"roi_foreground_samples": samples.positives_per_image()}
            class_logits, box_deltas = self.predict(features, samples.boxes)
            return None, self.losses(class_logits, box_deltas, samples)
        # Proposals are padded to a fixed count per image, valid ones first; on small images
        # most slots are empty. One read of the fullest image's count spares the head that work.
        num_kept = int(proposals.valid.sum(dim=1).max())
        proposals = Proposals(*(values[:, :num_kept] for values in proposals))
        class_logits, box_deltas = self.predict(features, proposals.boxes)
        return self.postprocess(class_logits, box_deltas, proposals, image_sizes), {}

    def predict(self, features: Sequence[Tensor], boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits ``[B, R, C]`` and deltas ``[B, R, C*4]`` for ``boxes [B, R, 4]``."""
        num_images, num_boxes = boxes.shape[:2]
        image_index = torch.arange(num_images, device=boxes.device, dtype=boxes.dtype)
        rois = torch.cat([image_index[:, None, None].expand(-1, num_boxes, 1), boxes], dim=2).flatten(0, 1)
        class_logits, box_deltas = self.box_predictor(self.box_head(self.pooler(features, rois)))
        # float32 also under autocast: the deltas become pixel coordinates.
        return (
            class_logits.float().unflatten(0, (num_images, num_boxes)),
            box_deltas.float().unflatten(0, (num_images, num_boxes)),
        )

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: Proposals, gt: GroundTruth, generator: torch.Generator | None = None
    ) -> Samples:
        """Match ``proposals [B, P, 4]`` plus the ground-truth boxes ``[B, G, 4]`` to the
        ground truth and sample S per image (``index`` into the P + G candidates)."""
        # The ground-truth boxes join the proposals, so every object has a perfect positive.
        candidates = torch.cat([proposals.boxes, gt.boxes], dim=1)
        labels, matched_boxes = label_by_matching(self.matcher, gt, candidates)
        labels = labels.masked_fill(~torch.cat([proposals.valid, gt.valid], dim=1), -1)
        sampled, valid = self.sampler(labels, generator)  # [B, S]
        rois = candidates.gather(1, sampled[..., None].expand(-1, -1, 4))
        labels = labels.gather(1, sampled).clamp(min=0)
        positive = valid & (labels > 0)
        target_deltas = self.box_coder.encode(matched_boxes.gather(1, sampled[..., None].expand(-1, -1, 4)), rois)
        target_deltas = torch.where(positive[..., None], target_deltas, 0.0)  # background rows hold log(0)
        return Samples(sampled, valid, labels, rois, target_deltas)

    def losses(self, class_logits: Tensor, box_deltas: Tensor, samples: Samples) -> dict[str, Tensor]:
        """Cross-entropy over sampled boxes and smooth-L1 (beta 1/9) on the positive ones,
        both summed over the batch's samples and divided by their number.

        Args:
            class_logits ``[B, S, C]``, box_deltas ``[B, S, C*4]``: ``predict`` on ``samples.boxes``.
        """
        labels, valid = samples.labels, samples.valid
        positive = valid & (labels > 0)
        num_sampled = valid.sum().clamp(min=1)
        classification = F.cross_entropy(class_logits.flatten(0, 1), labels.flatten(), reduction="none")
        # Indexing, not gather: gather would save all of ``box_deltas`` for backward.
        rows = torch.arange(labels.shape[0], device=labels.device)[:, None]
        columns = torch.arange(labels.shape[1], device=labels.device)
        pred_deltas = box_deltas.unflatten(-1, (-1, 4))[rows, columns, labels]  # [B, S, 4]
        box_loss = F.smooth_l1_loss(pred_deltas, samples.target_deltas, beta=1 / 9, reduction="none")
        return {
            "roi_cls": torch.where(valid.flatten(), classification, 0.0).sum() / num_sampled,
            "roi_box": torch.where(positive, box_loss.sum(-1), 0.0).sum() / num_sampled,
        }

    @torch.no_grad()
    def postprocess(
        self, class_logits: Tensor, box_deltas: Tensor, proposals: Proposals, image_sizes: Tensor
    ) -> Detections:
        """Softmax → per-class boxes → clip → score threshold → drop tiny → NMS per class → top D.

        Args:
            class_logits ``[B, P, C]``, box_deltas ``[B, P, C*4]``, image_sizes ``[B, 2]``.
        """
        num_images, num_proposals, num_classes = class_logits.shape
        boxes, scores, candidate = self.candidates(class_logits, box_deltas, proposals, image_sizes)
        index = torch.nonzero(candidate.flatten()).squeeze(1)  # one read from the device: how many
        boxes, scores = boxes.flatten(0, 2)[index], scores.flatten()[index]
        labels = index % (num_classes - 1) + 1
        image_index = index // (num_proposals * (num_classes - 1))
        kept, valid = batched_nms_per_image(
            boxes, scores, labels, image_index, self.nms_thresh, num_images, num_classes, self.detections_per_img
        )
        return Detections(pad_row(boxes)[kept], pad_row(scores)[kept], pad_row(labels)[kept], valid)

    def candidates(
        self, class_logits: Tensor, box_deltas: Tensor, proposals: Proposals, image_sizes: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-class boxes and scores of every proposal, without the background class.

        Args: as ``postprocess``.

        Returns:
            boxes ``[B, P, C-1, 4]`` clipped to the images, scores ``[B, P, C-1]``, and
            candidate ``[B, P, C-1]`` bool: above ``score_thresh``, a valid proposal, large enough.
        """
        scores = F.softmax(class_logits, dim=-1)[..., 1:]  # background column dropped
        boxes = self.box_coder.decode(box_deltas, proposals.boxes)[..., 1:, :]
        boxes = clip_boxes(boxes, image_sizes)
        candidate = (scores > self.score_thresh) & proposals.valid[..., None] & nonempty_boxes(boxes, self.min_size)
        return boxes, scores, candidate
