"""Pictures of detections, ground truth and RPN proposals.

Images are ``uint8`` (3, H, W) tensors; boxes ``xyxy`` in that image's pixels. The returned
picture has the same shape and dtype, so it goes to a PNG (:func:`save_picture`)
or to TensorBoard (``SummaryWriter.add_image(tag, picture)``, CHW) as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

GT_COLOR = (0, 220, 0)
PRED_COLOR = (255, 60, 40)
PROPOSAL_COLOR = (40, 160, 255)


def _label_name(label: int, class_names: Sequence[str] | None) -> str:
    return class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)


def draw_detections(
    image: Tensor,
    pred_boxes: Tensor,
    pred_scores: Tensor,
    pred_labels: Tensor,
    gt_boxes: Tensor | None = None,
    gt_labels: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.3,
    max_detections: int = 50,
    line_width: int = 2,
) -> Tensor:
    """Ground truth (green, class name) under the detections (red, "name score").

    Args:
        image (Tensor[3, H, W]): uint8.
        pred_boxes (Tensor[K, 4]), pred_scores (Tensor[K]), pred_labels (Tensor[K]).
        gt_boxes (Tensor[N, 4]), gt_labels (Tensor[N]): optional.
        score_threshold, max_detections: which detections are drawn (the best ones).

    Returns:
        Tensor[3, H, W] uint8.
    """
    picture = image.detach().cpu()
    if gt_boxes is not None and len(gt_boxes):
        gt_names = [_label_name(label, class_names) for label in gt_labels.tolist()] if gt_labels is not None else None
        picture = draw_bounding_boxes(picture, gt_boxes.detach().cpu().float(), gt_names, colors=GT_COLOR, width=line_width)
    keep = torch.argsort(pred_scores.detach().cpu(), descending=True)[:max_detections]
    keep = keep[pred_scores.detach().cpu()[keep] >= score_threshold]
    if len(keep):
        names = [
            f"{_label_name(label, class_names)} {score:.2f}"
            for label, score in zip(pred_labels.detach().cpu()[keep].tolist(), pred_scores.detach().cpu()[keep].tolist())
        ]
        picture = draw_bounding_boxes(
            picture, pred_boxes.detach().cpu()[keep].float(), names, colors=PRED_COLOR, width=line_width
        )
    return picture


def draw_proposals(
    image: Tensor,
    proposals: Tensor,
    num_proposals: int = 100,
    gt_boxes: Tensor | None = None,
    line_width: int = 1,
) -> Tensor:
    """The first ``num_proposals`` RPN proposals (Tensor[R, 4], sorted by objectness) in
    blue over the ground truth in green; returns Tensor[3, H, W] uint8."""
    picture = image.detach().cpu()
    if gt_boxes is not None and len(gt_boxes):
        picture = draw_bounding_boxes(picture, gt_boxes.detach().cpu().float(), colors=GT_COLOR, width=line_width + 1)
    top = proposals.detach().cpu()[:num_proposals].float()
    if len(top):
        picture = draw_bounding_boxes(picture, top, colors=PROPOSAL_COLOR, width=line_width)
    return picture


def save_picture(picture: Tensor, path: str | Path) -> Path:
    """Write a uint8 (3, H, W) picture as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture.permute(1, 2, 0).contiguous().numpy()).save(path)
    return path
