"""Faster R-CNN with a ResNet-50 FPN backbone, wired stage by stage.

Conventions: label 0 is background and object classes are ``1 .. num_classes - 1``;
boxes are ``xyxy`` in absolute pixels of each input image. Defaults equal torchvision's
``fasterrcnn_resnet50_fpn`` (v1), so its weights load through ``frcnn.convert``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.backbone import ResNet50, load_backbone_weights
from frcnn.modeling.fpn import FPN
from frcnn.modeling.matcher import Matcher
from frcnn.modeling.roi_heads import BoxPredictor, MultiScaleRoIAlign, RoIHeads, TwoMLPHead
from frcnn.modeling.rpn import RegionProposalNetwork, RPNHead
from frcnn.modeling.sampler import BalancedSampler
from frcnn.modeling.transform import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, image_sizes
from frcnn.ops import BoxCoder

__all__ = ["Backbone", "FasterRCNN"]

LOSS_NAMES = ("rpn_cls", "rpn_box", "roi_cls", "roi_box")


class Backbone(nn.Module):
    """ResNet-50 body + FPN: images ``[B, 3, H, W]`` → P2–P6."""

    def __init__(self, body: ResNet50, fpn: FPN) -> None:
        super().__init__()
        self.body = body
        self.fpn = fpn

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.fpn(self.body(images))


class FasterRCNN(nn.Module):
    """Faster R-CNN R50-FPN.

    ``model.train(); losses = model(images, targets)`` returns ``rpn_cls``, ``rpn_box``,
    ``roi_cls`` and ``roi_box`` (their sum is the training loss);
    ``model.eval(); detections = model(images)`` returns one dict per image with
    ``boxes [K, 4]``, ``scores [K]`` and ``labels [K]``.

    ``images`` is a list of ``[3, H, W]`` tensors, uint8 (0–255) or float (0–1), any
    sizes; each target has ``boxes`` float ``[N, 4]`` and ``labels`` int64 ``[N]``, N may be 0.

    Args:
        num_classes: number of classes including background (81 for COCO's 80 classes).
        backbone_weights: ImageNet weights for ResNet-50: a torchvision ``resnet50``
            state-dict file, or a torchvision weights name (needs internet).
        norm, trainable_layers, grad_checkpointing: see ``ResNet50``.
        validate_targets: check target values (finite, non-degenerate boxes, labels in
            range) in training; costs one host synchronisation per step.
        The remaining options carry torchvision's names and defaults.
    """

    def __init__(
        self,
        num_classes: int = 81,
        *,
        backbone_weights: str | None = None,
        norm: str = "frozen_bn",
        trainable_layers: int = 3,
        grad_checkpointing: bool = False,
        fpn_channels: int = 256,
        min_size: int = 800,
        max_size: int = 1333,
        resize: bool = True,
        size_divisible: int = 32,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_score_thresh: float = 0.0,
        box_output_size: int = 7,
        box_sampling_ratio: int = 2,
        box_representation_size: int = 1024,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        validate_targets: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes} must count background too (at least 2)")
        self.num_classes = num_classes
        self.validate_targets = validate_targets
        self.transform = ImageTransform(min_size, max_size, resize, size_divisible, image_mean, image_std)

        body = ResNet50(norm, trainable_layers, grad_checkpointing)
        if backbone_weights:
            load_backbone_weights(body, backbone_weights)
        self.backbone = Backbone(body, FPN(ResNet50.out_channels, fpn_channels))

        anchors = AnchorGenerator([(size,) for size in anchor_sizes], [tuple(aspect_ratios)] * len(anchor_sizes))
        self.rpn = RegionProposalNetwork(
            anchors,
            RPNHead(fpn_channels, anchors.num_anchors_per_location[0]),
            matcher=Matcher(rpn_fg_iou_thresh, rpn_bg_iou_thresh, allow_low_quality_matches=True),
            sampler=BalancedSampler(rpn_batch_size_per_image, rpn_positive_fraction),
            box_coder=BoxCoder((1.0, 1.0, 1.0, 1.0)),
            pre_nms_top_n={"train": rpn_pre_nms_top_n_train, "test": rpn_pre_nms_top_n_test},
            post_nms_top_n={"train": rpn_post_nms_top_n_train, "test": rpn_post_nms_top_n_test},
            nms_thresh=rpn_nms_thresh,
            score_thresh=rpn_score_thresh,
        )
        self.roi_heads = RoIHeads(
            MultiScaleRoIAlign((4, 8, 16, 32), box_output_size, box_sampling_ratio),
            TwoMLPHead(fpn_channels * box_output_size**2, box_representation_size),
            BoxPredictor(box_representation_size, num_classes),
            matcher=Matcher(box_fg_iou_thresh, box_bg_iou_thresh),
            sampler=BalancedSampler(box_batch_size_per_image, box_positive_fraction),
            box_coder=BoxCoder(tuple(bbox_reg_weights)),
            score_thresh=box_score_thresh,
            nms_thresh=box_nms_thresh,
            detections_per_img=box_detections_per_img,
        )

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        self._check_images(images)
        if self.training:
            self._check_targets(images, targets)
            batch, gt = self.transform(images, targets)
            features = self.backbone(batch.tensor)
            proposals, rpn_losses = self.rpn(batch, features, gt)
            _, roi_losses = self.roi_heads(features[:4], proposals, batch.image_sizes, gt)
            return {**rpn_losses, **roi_losses}

        batch, _ = self.transform(images)
        features = self.backbone(batch.tensor)
        proposals, _ = self.rpn(batch, features)
        detections, _ = self.roi_heads(features[:4], proposals, batch.image_sizes)
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
        proposals, _ = self.rpn(batch, self.backbone(batch.tensor))
        boxes = self.transform.map_back(proposals.boxes, batch, image_sizes(images))
        return [b[:n] for b, n in zip(boxes, proposals.valid.sum(dim=1).tolist())]

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
