"""Faster R-CNN wired from its stages: transform → backbone → anchors + RPN → RoI heads.

Conventions: label 0 is background and object classes are ``1 .. num_classes - 1``;
boxes are ``xyxy`` in absolute pixels of each input image. ``FasterRCNN.r50_fpn()``'s
defaults equal torchvision's ``fasterrcnn_resnet50_fpn`` (v1), so its weights load
through ``frcnn.convert``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hydra
import torch
from torch import Tensor, nn

from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.config import r50_fpn_config
from frcnn.modeling.roi_heads import Detections
from frcnn.modeling.structures import ImageBatch
from frcnn.modeling.transform import ImageTransform, image_sizes

__all__ = ["FasterRCNN"]

LOSS_NAMES = ("rpn_cls", "rpn_box", "roi_cls", "roi_box")


class FasterRCNN(nn.Module):
    """Faster R-CNN from built stages (``conf/model/`` builds them; ``FasterRCNN.r50_fpn``
    builds R50-FPN from torchvision's option names).

    ``model.train(); losses = model(images, targets)`` returns ``rpn_cls``, ``rpn_box``,
    ``roi_cls`` and ``roi_box`` (their sum is the training loss) and leaves the batch's
    health in ``model.training_stats``;
    ``model.eval(); detections = model(images)`` returns one dict per image with
    ``boxes [K, 4]``, ``scores [K]`` and ``labels [K]``.

    ``images`` is a list of ``[3, H, W]`` tensors, uint8 (0–255) or float (0–1), any
    sizes; each target has ``boxes`` float ``[N, 4]`` and ``labels`` int64 ``[N]``, N may be 0.

    Args:
        num_classes: number of classes including background (81 for COCO's 80 classes).
        transform: images → ``ImageBatch`` (``ImageTransform``), and boxes back.
        backbone: ``[B, 3, H, W]`` → pyramid levels (``out_channels`` each; R50-FPN: P2–P6).
        anchor_generator: anchors ``[A, 4]`` for the padded batch and the levels.
        rpn: levels + anchors → proposals (and its losses in training).
        roi_heads: levels + proposals → detections (and its losses in training); its pooler
            reads the levels it has strides for.
        validate_targets: check target values (finite, non-degenerate boxes, labels in
            range) in training; costs one host synchronisation per step.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        transform: ImageTransform,
        backbone: nn.Module,
        anchor_generator: AnchorGenerator,
        rpn: nn.Module,
        roi_heads: nn.Module,
        validate_targets: bool = True,
    ) -> None:
        super().__init__()
        if num_classes is None or num_classes < 2:
            raise ValueError(f"num_classes={num_classes} must count background too (at least 2)")
        predictor_classes = getattr(roi_heads.box_predictor, "num_classes", num_classes)
        if predictor_classes != num_classes:
            raise ValueError(f"model.num_classes={num_classes} but the box predictor has {predictor_classes} classes")
        head_anchors = getattr(rpn.head, "num_anchors_per_location", None)
        if head_anchors is not None and set(anchor_generator.num_anchors_per_location) != {head_anchors}:
            raise ValueError(
                f"the anchor generator places {anchor_generator.num_anchors_per_location} anchors per location "
                f"on the levels but model.rpn.head.num_anchors_per_location={head_anchors}: make them agree"
            )
        self.num_classes = num_classes
        self.validate_targets = validate_targets
        self.transform = transform
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.rpn = rpn
        self.roi_heads = roi_heads
        # Health of the last training forward, detached, never part of the loss:
        # ``rpn_positive_anchors`` and ``roi_foreground_samples`` (sampled per image, batch mean).
        self.training_stats: dict[str, Tensor] = {}

    @classmethod
    def r50_fpn(cls, num_classes: int = 81, **options: Any) -> FasterRCNN:
        """R50-FPN with torchvision's option names and defaults (``rpn_pre_nms_top_n_train``,
        ``box_score_thresh``, ``min_size`` …); see ``frcnn.modeling.config.r50_fpn_config``."""
        return hydra.utils.instantiate(r50_fpn_config(num_classes, **options), _convert_="all")

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        self._check_images(images)
        if self.training:
            self._check_targets(images, targets)
            batch, gt = self.transform(images, targets)
            features = self.backbone(batch.tensor)
            proposals, rpn_losses = self.rpn(batch, features, self._anchors(batch, features), gt)
            _, roi_losses = self.roi_heads(features, proposals, batch.image_sizes, gt)
            self.training_stats = {**getattr(self.rpn, "training_stats", {}), **getattr(self.roi_heads, "training_stats", {})}
            return {**rpn_losses, **roi_losses}

        batch, _ = self.transform(images)
        features = self.backbone(batch.tensor)
        proposals, _ = self.rpn(batch, features, self._anchors(batch, features))
        detections, _ = self.roi_heads(features, proposals, batch.image_sizes)
        return self._per_image(detections, batch, images)

    @torch.no_grad()
    def detect_with_losses(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]], generator: torch.Generator | None = None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Evaluation mode: ``forward``'s detections, and the four losses against ``targets``
        from the same pass (backbone and RPN once), for the validation loss.

        The losses are the training losses' terms computed in evaluation mode, so they differ
        from a training step's in three ways: batch norm (``norm=bn``) uses its running
        statistics and does not update them; the RoI losses sample from the test-time
        proposals (``*_top_n_test``); both samplers draw from ``generator`` (None: torch's
        global stream, which training uses: pass one to leave that stream untouched).
        """
        if self.training:
            raise RuntimeError("detect_with_losses runs in evaluation mode: call model.eval() first")
        self._check_images(images)
        self._check_targets(images, targets)
        batch, gt = self.transform(images, targets)
        features = self.backbone(batch.tensor)
        proposals, rpn_losses = self.rpn(batch, features, self._anchors(batch, features), gt, generator)
        _, roi_losses = self.roi_heads(features, proposals, batch.image_sizes, gt, generator)
        detections, _ = self.roi_heads(features, proposals, batch.image_sizes)
        return self._per_image(detections, batch, images), {**rpn_losses, **roi_losses}

    def _per_image(self, detections: Detections, batch: ImageBatch, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """Padded ``[B, D]`` detections → one dict per image, boxes in the input images' pixels."""
        boxes = self.transform.map_back(detections.boxes, batch, image_sizes(images))
        counts = detections.valid.sum(dim=1).tolist()  # the one read of the batch: valid slots are a prefix
        return [
            {"boxes": b[:n], "scores": s[:n], "labels": l[:n]}
            for b, s, l, n in zip(boxes, detections.scores, detections.labels, counts)
        ]

    @torch.no_grad()
    def proposals(self, images: Sequence[Tensor]) -> list[Tensor]:
        """RPN proposals ``[P, 4]`` per image, best first, in the input images' pixels."""
        self._check_images(images)
        batch, _ = self.transform(images)
        features = self.backbone(batch.tensor)
        proposals, _ = self.rpn(batch, features, self._anchors(batch, features))
        boxes = self.transform.map_back(proposals.boxes, batch, image_sizes(images))
        return [b[:n] for b, n in zip(boxes, proposals.valid.sum(dim=1).tolist())]

    def _anchors(self, batch: ImageBatch, features: Sequence[Tensor]) -> tuple[Tensor, list[int]]:
        return self.anchor_generator(batch.tensor.shape[-2:], features)

    @staticmethod
    def _check_images(images: Sequence[Tensor]) -> None:
        if isinstance(images, Tensor) or not images or not all(isinstance(image, Tensor) for image in images):
            raise ValueError("images must be a non-empty list of [3, H, W] tensors (uint8 0-255 or float 0-1)")
        for index, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 1:
                raise ValueError(f"images[{index}] has shape {tuple(image.shape)}; expected [3, H, W]")
            if image.dtype != torch.uint8 and not image.is_floating_point():
                raise ValueError(f"images[{index}] has dtype {image.dtype}; expected uint8 (0-255) or float (0-1)")

    def _check_targets(self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None) -> None:
        if targets is None or len(targets) != len(images):
            raise ValueError("targets must be given in training: one dict with 'boxes' and 'labels' per image")
        for index, target in enumerate(targets):
            boxes, labels = target.get("boxes"), target.get("labels")
            if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
                raise ValueError(f"targets[{index}]['boxes'] must be a float tensor [N, 4] (xyxy pixels)")
            if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != boxes.shape[:1]:
                raise ValueError(f"targets[{index}]['labels'] must be an int64 tensor [N] matching its boxes")
        if self.validate_targets:
            self._check_target_values(targets)

    def _check_target_values(self, targets: Sequence[dict[str, Tensor]]) -> None:
        boxes = torch.cat([t["boxes"] for t in targets]).float()
        labels = torch.cat([t["labels"] for t in targets])
        bad_boxes = ~torch.isfinite(boxes).all(dim=1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        bad_labels = (labels < 1) | (labels >= self.num_classes)
        problems = torch.stack([bad_boxes.any(), bad_labels.any()]).tolist()  # one host sync for both
        if problems[0]:
            raise ValueError("targets hold boxes that are NaN/inf or have x2 <= x1 or y2 <= y1; drop or fix them")
        if problems[1]:
            raise ValueError(f"targets hold labels outside 1..{self.num_classes - 1} (0 is background)")
