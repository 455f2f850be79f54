"""Region Proposal Network: objectness and box deltas for every anchor → proposals.

Stages, each batched over the images: ``RPNHead`` predicts per anchor;
``RegionProposalNetwork.propose`` keeps the best anchors per level, decodes and filters
them and runs NMS for the whole batch in few calls; in training ``label_and_sample_anchors``
picks the anchors to learn from and ``losses`` returns the two RPN losses on them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frcnn.modeling.matcher import Matcher, label_by_matching
from frcnn.modeling.sampler import BalancedSampler
from frcnn.modeling.structures import GroundTruth, ImageBatch, Proposals, Samples
from frcnn.ops import BoxCoder, batched_nms_per_image, clip_boxes, nonempty_boxes, pad_row

__all__ = ["RPNHead", "RegionProposalNetwork"]


class RPNHead(nn.Module):
    """A shared 3×3 conv + ReLU, then 1×1 convs for objectness and deltas, on every level.

    Shapes: levels ``[B, channels, Hi, Wi]`` → objectness ``[B, A]``, deltas ``[B, A, 4]``,
    with anchors ordered as ``AnchorGenerator`` orders them.
    """

    def __init__(self, channels: int, num_anchors_per_location: int) -> None:
        super().__init__()
        self.num_anchors_per_location = num_anchors_per_location
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(channels, num_anchors_per_location, 1)
        self.anchor_deltas = nn.Conv2d(channels, num_anchors_per_location * 4, 1)
        for conv in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        logits, deltas = [], []
        for feature in features:
            hidden = F.relu(self.conv(feature))
            num_images, _, height, width = feature.shape
            # [B, A*k, H, W] → [B, H, W, A, k]: location-major, anchor-minor, like the anchors.
            logits.append(self.objectness_logits(hidden).permute(0, 2, 3, 1).reshape(num_images, -1))
            delta = self.anchor_deltas(hidden).view(num_images, -1, 4, height, width)
            deltas.append(delta.permute(0, 3, 4, 1, 2).reshape(num_images, -1, 4))
        return torch.cat(logits, dim=1), torch.cat(deltas, dim=1)


class RegionProposalNetwork(nn.Module):
    """Args (torchvision's names and defaults):
        head: the per-anchor predictor, e.g. ``RPNHead``.
        fg_iou_thresh, bg_iou_thresh: anchors with IoU >= fg are objects, < bg background
            (low-quality matches allowed: every object's best anchors are positive).
        batch_size_per_image, positive_fraction: anchors sampled per image for the losses.
        pre_nms_top_n_train/_test: best anchors kept per level before NMS.
        post_nms_top_n_train/_test: proposals kept per image after NMS.
        nms_thresh: IoU above which a lower-scoring proposal of the same level is dropped.
        score_thresh: minimum objectness probability.
        min_size: proposals narrower or lower than this (pixels) are dropped.
    """

    def __init__(
        self,
        head: nn.Module,
        *,
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n_train: int = 2000,
        pre_nms_top_n_test: int = 1000,
        post_nms_top_n_train: int = 2000,
        post_nms_top_n_test: int = 1000,
        nms_thresh: float = 0.7,
        score_thresh: float = 0.0,
        min_size: float = 1e-3,
    ) -> None:
        super().__init__()
        self.head = head
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.pre_nms_top_n = {"train": pre_nms_top_n_train, "test": pre_nms_top_n_test}
        self.post_nms_top_n = {"train": post_nms_top_n_train, "test": post_nms_top_n_test}
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = min_size
        # Set by each training forward: positive anchors sampled per image (detached, never a loss).
        self.training_stats: dict[str, Tensor] = {}

    def forward(
        self,
        images: ImageBatch,
        features: Sequence[Tensor],
        anchors: tuple[Tensor, list[int]],
        gt: GroundTruth | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Proposals, dict[str, Tensor]]:
        """Proposals for ``images`` from pyramid ``features`` (P2–P6); losses when ``gt`` is given.

        ``anchors``: what ``AnchorGenerator`` returns, ``[A, 4]`` and the count per level.
        ``generator``: the anchor sampler's random stream (None: torch's global one).
        """
        anchors, anchors_per_level = anchors
        # Box arithmetic and losses run in float32 also under autocast: half precision cannot
        # hold pixel coordinates (bfloat16 steps by 8 px at 1024).
        logits, deltas = (output.float() for output in self.head(features))
        proposals = self.propose(logits.detach(), deltas.detach(), anchors, anchors_per_level, images.image_sizes)
        if gt is None:
            return proposals, {}
        samples = self.label_and_sample_anchors(anchors, gt, generator)
        self.training_stats = {"rpn_positive_anchors": samples.positives_per_image()}
        return proposals, self.losses(logits, deltas, samples)

    @torch.no_grad()
    def propose(
        self,
        logits: Tensor,
        deltas: Tensor,
        anchors: Tensor,
        anchors_per_level: list[int],
        image_sizes: Tensor,
    ) -> Proposals:
        """Top anchors per level → decode → clip → filter → NMS per level → top P per image.

        Args:
            logits ``[B, A]``, deltas ``[B, A, 4]``, anchors ``[A, 4]``, image_sizes ``[B, 2]``.
        """
        boxes, scores, levels, candidate, top_counts = self.candidates(logits, deltas, anchors, anchors_per_level, image_sizes)
        num_images, num_candidates = scores.shape
        boxes, scores, candidate = boxes.flatten(0, 1), scores.flatten(), candidate.flatten()  # [B*K, ...]
        # No compaction of the candidates (it would wait for the device): the others score -inf,
        # so they suppress nothing, and are dropped when the kept boxes are packed. Each
        # image's levels are consecutive runs of known length: no read of group sizes either.
        image_index = torch.arange(num_images, device=logits.device)[:, None].expand(-1, num_candidates)
        per_image = min(self.post_nms_top_n["train" if self.training else "test"], num_candidates)
        kept, valid = batched_nms_per_image(
            boxes,
            scores.masked_fill(~candidate, float("-inf")),
            levels.expand(num_images, -1).flatten(),
            image_index.flatten(),
            self.nms_thresh,
            num_images,
            len(anchors_per_level),
            per_image,
            candidate=candidate,
            group_sizes=top_counts * num_images,
        )
        return Proposals(boxes=pad_row(boxes)[kept], scores=pad_row(scores)[kept], valid=valid)

    def candidates(
        self,
        logits: Tensor,
        deltas: Tensor,
        anchors: Tensor,
        anchors_per_level: list[int],
        image_sizes: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, list[int]]:
        """The best anchors of each level, decoded and clipped: what NMS chooses from.

        Args: as ``propose``.

        Returns:
            boxes ``[B, K, 4]``, scores ``[B, K]`` (objectness probability), levels ``[K]``
            int64, candidate ``[B, K]`` bool (large enough and above ``score_thresh``), and
            the K boxes' count per level.
        """
        mode = "train" if self.training else "test"
        top_indices, levels, top_counts = [], [], []
        offset = 0
        for level, count in enumerate(anchors_per_level):
            k = torch.sym_min(self.pre_nms_top_n[mode], count)  # sym_min: counts are symbolic in an export
            top_indices.append(logits[:, offset : offset + count].topk(k, dim=1).indices + offset)
            levels.append(torch.full((k,), level, dtype=torch.int64, device=logits.device))
            top_counts.append(k)
            offset += count
        top_indices = torch.cat(top_indices, dim=1)  # [B, K]

        scores = logits.gather(1, top_indices).sigmoid()
        chosen_deltas = deltas.gather(1, top_indices[..., None].expand(-1, -1, 4))
        boxes = self.box_coder.decode(chosen_deltas, anchors[top_indices]).squeeze(-2)
        boxes = clip_boxes(boxes, image_sizes)
        candidate = nonempty_boxes(boxes, self.min_size) & (scores >= self.score_thresh)
        return boxes, scores, torch.cat(levels), candidate, top_counts

    @torch.no_grad()
    def label_and_sample_anchors(self, anchors: Tensor, gt: GroundTruth, generator: torch.Generator | None = None) -> Samples:
        """Match ``anchors [A, 4]`` to the ground truth and sample S per image.

        Returns ``Samples`` with ``index`` into A and ``labels`` the matched class
        (``> 0``: object); deltas encode the matched box against the anchor.
        """
        labels, matched_boxes = label_by_matching(self.matcher, gt, anchors)
        sampled, valid = self.sampler(labels, generator)  # [B, S]
        sampled_labels = labels.gather(1, sampled).clamp(min=0)
        positive = valid & (sampled_labels > 0)
        sampled_anchors = anchors[sampled]
        matched = matched_boxes.gather(1, sampled[..., None].expand(-1, -1, 4))
        target_deltas = self.box_coder.encode(matched, sampled_anchors)
        target_deltas = torch.where(positive[..., None], target_deltas, 0.0)  # background rows hold log(0)
        return Samples(sampled, valid, sampled_labels, sampled_anchors, target_deltas)

    def losses(self, logits: Tensor, deltas: Tensor, samples: Samples) -> dict[str, Tensor]:
        """Objectness (binary cross-entropy) and box (smooth-L1, beta 1/9) losses, both
        summed over the sampled anchors of the batch and divided by their number.

        Args:
            logits ``[B, A]``, deltas ``[B, A, 4]``: the head's outputs for every anchor;
            samples: from ``label_and_sample_anchors`` (S per image).
        """
        is_object = samples.labels > 0
        positive = samples.valid & is_object
        num_sampled = samples.valid.sum().clamp(min=1)
        # Indexing, not gather: gather would save all of ``logits`` and ``deltas`` for backward.
        rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
        objectness = F.binary_cross_entropy_with_logits(
            logits[rows, samples.index], is_object.to(logits.dtype), reduction="none"
        )
        box_loss = F.smooth_l1_loss(deltas[rows, samples.index], samples.target_deltas, beta=1 / 9, reduction="none")
        return {
            "rpn_cls": torch.where(samples.valid, objectness, 0.0).sum() / num_sampled,
            "rpn_box": torch.where(positive, box_loss.sum(-1), 0.0).sum() / num_sampled,
        }
