"""The whole detector as one traceable function of a uint8 batch, for ``torch.onnx.export``.

``ExportableDetector`` runs the model's own modules and math (backbone, anchor generator,
RPN head and ``RegionProposalNetwork.candidates``, box head and ``RoIHeads.candidates``,
``BoxCoder``, ``clip_boxes``, ``to_original_pixels``); it replaces only the steps whose
eager form reads sizes from the device to save work (NMS calls packed by count, RoI pooling
by level, trimming empty proposal slots): here every such size stays a tensor, candidates
are padded to a fixed count with ``-inf`` scores, and one final filter drops the padding.

Shorthand: B images, H0 × W0 input size, H × W resized, K RPN candidates per image, P
proposals per image, C classes with background, D detections per image, N detections in all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from frcnn.export.nms import nms
from frcnn.modeling.structures import Proposals
from frcnn.ops.rescale import to_original_pixels

__all__ = ["ExportableDetector", "ResizeSpec", "resized_size"]


@dataclass(frozen=True)
class ResizeSpec:
    """The data config's resize (``frcnn.data.transforms.build_resize``): ``keep_ratio``,
    ``square`` or ``none``, with its sizes."""

    mode: str = "keep_ratio"
    min_size: int = 800
    max_size: int = 1333
    square_size: int = 800


def resized_size(height, width, spec: ResizeSpec):
    """(H, W) that ``build_resize(spec)`` gives an image of ``height`` × ``width``.

    torchvision's rule in integer arithmetic (``int(a * b / c)`` of Python equals ``a * b // c``
    for these magnitudes), written without branches so that it stays symbolic in an export;
    a side is never below 1 px (torchvision would fail on such an image).
    """
    if spec.mode == "square":
        return spec.square_size, spec.square_size
    if spec.mode == "none":
        return height, width
    short, long = torch.sym_min(height, width), torch.sym_max(height, width)
    scaled_long = spec.min_size * long // short
    new_long = torch.sym_min(scaled_long, spec.max_size)
    new_short = torch.sym_max(1, torch.sym_min(spec.min_size, spec.max_size * spec.min_size // scaled_long))
    portrait = torch.sym_min(torch.sym_max(height - width + 1, 0), 1)  # 1 when width <= height
    return (
        portrait * new_long + (1 - portrait) * new_short,
        portrait * new_short + (1 - portrait) * new_long,
    )


class ExportableDetector(nn.Module):
    """``FasterRCNN`` (eval mode) + its input resize: images ``[B, 3, H0, W0]`` uint8 →
    boxes ``[N, 4]`` float32 (xyxy in input pixels), scores ``[N]``, labels ``[N]`` int64
    (1..C-1), batch_index ``[N]`` int64; each image's detections best first.

    Exported as two graphs joined into one file (``frcnn.export.to_onnx``): ``preprocess`` and
    ``detect``. The export's shape reasoning could not follow the resize rule's sizes
    through a ResNet in reasonable time; ``detect`` sees only a batch padded to
    ``size_divisible`` × (h, w) and the sizes as a tensor, which it follows in seconds.
    """

    def __init__(self, model: nn.Module, resize: ResizeSpec) -> None:
        super().__init__()
        self.preprocess = Preprocess(model.transform, resize)
        self.detect = Detect(model)
        self.eval()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.detect(*self.preprocess(images))


class Preprocess(nn.Module):
    """images ``[B, 3, H0, W0]`` uint8 → the normalised batch ``[B, 3, Hp, Wp]`` padded to
    multiples of ``size_divisible``, the resized size (H, W) and the input size (H0, W0), ``[2]`` int64 each.

    Args:
        transform: the model's ``ImageTransform`` (mean, std, ``size_divisible``).
        resize: the data pipeline's resize.
    """

    def __init__(self, transform: nn.Module, resize: ResizeSpec) -> None:
        super().__init__()
        self.transform = transform
        self.resize = resize

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        orig_height, orig_width = images.shape[-2:]
        height, width = resized_size(orig_height, orig_width, self.resize)
        resized = images.float()
        if self.resize.mode != "none":  # the data pipeline's antialiased bilinear resize, rounded to uint8 as it is
            resized = F.interpolate(resized, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
            resized = resized.round().clamp(0, 255)
        transform = self.transform
        normalised = (resized / 255 - transform.image_mean) / transform.image_std
        divisor = transform.size_divisible
        pad_bottom = (height + divisor - 1) // divisor * divisor - height
        pad_right = (width + divisor - 1) // divisor * divisor - width
        batch = F.pad(normalised, (0, pad_right, 0, pad_bottom))
        size = torch.stack([torch.scalar_tensor(height, dtype=torch.int64), torch.scalar_tensor(width, dtype=torch.int64)])
        orig_size = torch.stack([torch.scalar_tensor(orig_height, dtype=torch.int64), torch.scalar_tensor(orig_width, dtype=torch.int64)])
        return batch, size, orig_size


class Detect(nn.Module):
    """The model on a ``Preprocess``-ed batch: (batch, size, orig_size) → boxes, scores,
    labels, batch_index (see ``ExportableDetector``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Tensor, size: Tensor, orig_size: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        model = self.model
        num_images = batch.shape[0]
        image_sizes = size.expand(num_images, 2)
        features = model.backbone(batch)
        anchors, anchors_per_level = model.anchor_generator(batch.shape[-2:], features)
        proposals = self._propose(features, anchors, anchors_per_level, image_sizes)
        pooled = pool_by_level(model.roi_heads.pooler, features[:4], proposals.boxes)
        class_logits, box_deltas = model.roi_heads.box_predictor(model.roi_heads.box_head(pooled))
        num_proposals = proposals.boxes.shape[1]
        boxes, scores, labels, index = self._detect(
            class_logits.unflatten(0, (num_images, num_proposals)),
            box_deltas.unflatten(0, (num_images, num_proposals)),
            proposals,
            image_sizes,
        )
        return to_original_pixels(boxes, size, orig_size), scores, labels, index

    def _propose(self, features, anchors: Tensor, anchors_per_level, image_sizes: Tensor) -> Proposals:
        """``RegionProposalNetwork.propose``: NMS per (image, level) as one ONNX node."""
        rpn = self.model.rpn
        logits, deltas = (output.float() for output in rpn.head(features))
        boxes, scores, levels, candidate, _ = rpn.candidates(logits, deltas, anchors, anchors_per_level, image_sizes)
        num_levels = len(anchors_per_level)
        in_level = levels == torch.arange(num_levels, device=levels.device)[:, None]  # [L, K]
        level_scores = torch.where(in_level & candidate[:, None, :], scores[:, None, :], float("-inf"))
        selected = nms(boxes, level_scores, rpn.nms_thresh)
        kept, valid = top_selected(selected, scores, rpn.post_nms_top_n["test"])
        return Proposals(boxes.gather(1, kept[..., None].expand(-1, -1, 4)), scores.gather(1, kept), valid)

    def _detect(self, class_logits: Tensor, box_deltas: Tensor, proposals: Proposals, image_sizes: Tensor):
        """``RoIHeads.postprocess`` + the final filter: NMS per (image, class) as one ONNX node.

        Returns boxes ``[N, 4]``, scores ``[N]``, labels ``[N]``, image index ``[N]``.
        """
        roi_heads = self.model.roi_heads
        boxes, scores, candidate = roi_heads.candidates(class_logits, box_deltas, proposals, image_sizes)
        num_images, num_proposals, num_labels = scores.shape
        boxes, scores = boxes.flatten(1, 2), scores.flatten(1)  # [B, P*(C-1), ...]
        labels = torch.arange(num_labels, device=scores.device).repeat(num_proposals)  # 0-based, [P*(C-1)]
        # Classes apart on a square grid of image-sized cells (as ``frcnn.ops.nms`` does), so
        # that one class of the NMS node serves them all.
        columns = math.isqrt(num_labels - 1) + 1
        cell = (image_sizes.max() + 1) * torch.stack([labels % columns, labels // columns], dim=1).to(boxes.dtype)
        candidate_scores = torch.where(candidate.flatten(1), scores, float("-inf"))
        selected = nms(boxes + cell.repeat(1, 2), candidate_scores[:, None], roi_heads.nms_thresh)
        kept, valid = top_selected(selected, scores, roi_heads.detections_per_img)
        image_index, slot = torch.nonzero(valid, as_tuple=True)
        index = kept[image_index, slot]
        return boxes[image_index, index], scores[image_index, index], labels[index] + 1, image_index


def top_selected(selected: Tensor, scores: Tensor, max_per_image: int) -> tuple[Tensor, Tensor]:
    """The ``max_per_image`` best boxes of each image among those NMS ``selected``.

    Args:
        selected: ``[S, 3]`` (image, class, box) rows of ``nms``, each box at most once.
        scores: ``[B, K]``.

    Returns:
        kept ``[B, M]`` int64 indices into K, best first, and valid ``[B, M]`` bool (a prefix
        of each row), ``M = min(max_per_image, K)``.
    """
    image_index, box_index = selected[:, 0], selected[:, 2]
    kept_scores = torch.full_like(scores, float("-inf")).index_put((image_index, box_index), scores[image_index, box_index])
    top = kept_scores.topk(torch.sym_min(max_per_image, scores.shape[1]), dim=1)
    return top.indices, top.values > float("-inf")


def pool_by_level(pooler: nn.Module, features: list[Tensor], boxes: Tensor) -> Tensor:
    """``MultiScaleRoIAlign.forward`` on ``boxes [B, P, 4]`` → ``[B*P, channels, r, r]``,
    with each level's boxes found by a mask instead of a count read from the device."""
    num_images, num_boxes = boxes.shape[:2]
    image_index = torch.arange(num_images, device=boxes.device, dtype=boxes.dtype)
    rois = torch.cat([image_index[:, None, None].expand(-1, num_boxes, 1), boxes], dim=2).flatten(0, 1)
    levels = pooler.level_of(rois[:, 1:])
    size = pooler.output_size
    pooled = features[0].new_zeros((rois.shape[0], features[0].shape[1], size, size))
    for level, (feature, stride) in enumerate(zip(features, pooler.strides)):
        index = torch.nonzero(levels == level).squeeze(1)
        pooled = pooled.index_put(
            (index,), roi_align(feature, rois[index], size, 1.0 / stride, pooler.sampling_ratio, aligned=False)
        )
    return pooled
