"""Pictures of detections, ground truth and RPN proposals.

Images are ``uint8`` (3, H, W) tensors; boxes ``xyxy`` in that image's pixels. The returned
picture has the same shape and dtype, so it goes to a PNG (:func:`save_picture`)
or to TensorBoard (``SummaryWriter.add_image(tag, picture)``, CHW) as it is.

Line width and label font grow with the image (:func:`drawing_scale`), so labels stay
readable on a 128 px shapes image and on a 4000 px photo alike.
"""

from __future__ import annotations

import colorsys
import contextlib
import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, features
from torch import Tensor

GT_COLOR = (0, 220, 0)
PRED_COLOR = (255, 60, 40)
PROPOSAL_COLOR = (40, 160, 255)
Color = tuple[int, int, int]


def drawing_scale(height: int, width: int) -> tuple[int, int]:
    """(line width, font size) in pixels for a (height, width) picture viewed whole."""
    side = math.sqrt(height * width)
    return max(2, round(side / 320)), max(11, round(side / 40))


def class_color(label: int) -> Color:
    """A distinct, saturated colour per label (golden-ratio hues; green is left to the ground truth)."""
    hue = (label * 0.618034) % 1.0 * 0.75  # spread over 0.75 of the circle ...
    hue = hue + 0.25 if hue >= 0.2 else hue  # ... that skips the greens (0.2-0.45)
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return round(red * 255), round(green * 255), round(blue * 255)


def _label_name(label: int, class_names: Sequence[str] | None) -> str:
    return class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's built-in scalable font (Pillow >= 10.1) needs FreeType; else the fixed bitmap font.
    if features.check("freetype2"):
        with contextlib.suppress(TypeError):
            return ImageFont.load_default(size=size)
    return ImageFont.load_default()


def draw_boxes(
    image: Tensor,
    boxes: Tensor,
    colors: Color | Sequence[Color],
    texts: Sequence[str] | None = None,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Tensor:
    """Boxes with optional labels on a filled tab above each box (inside it at the top edge).

    Args:
        image (Tensor[3, H, W]): uint8.
        boxes (Tensor[N, 4]): xyxy in the image's pixels.
        colors: one colour, or one per box.
        texts: one label per box, or None.
        line_width, font_size: None: :func:`drawing_scale` of the image.

    Returns:
        Tensor[3, H, W] uint8, a new tensor.
    """
    height, width = image.shape[-2:]
    auto_width, auto_font = drawing_scale(height, width)
    line_width, font_size = line_width or auto_width, font_size or auto_font
    picture = Image.fromarray(image.detach().cpu().permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(picture)
    font = _font(font_size)
    pad = max(1, font_size // 6)
    box_list = boxes.detach().cpu().float().tolist()
    color_list = [colors] * len(box_list) if isinstance(colors[0], int) else list(colors)
    for index, (box, color) in enumerate(zip(box_list, color_list)):
        draw.rectangle(box, outline=tuple(color), width=line_width)
        if texts is None:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), texts[index], font=font)
        tab_w, tab_h = right - left + 2 * pad, bottom - top + 2 * pad
        x = min(max(box[0], 0), max(width - tab_w, 0))
        y = box[1] - tab_h if box[1] - tab_h >= 0 else max(box[1], 0)
        draw.rectangle((x, y, x + tab_w, y + tab_h), fill=tuple(color))
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        text_color = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        draw.text((x + pad - left, y + pad - top), texts[index], fill=text_color, font=font)
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).contiguous()


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
    line_width: int | None = None,
    pred_color: Color | None = PRED_COLOR,
) -> Tensor:
    """Ground truth (green, class name) under the detections ("name score").

    Args:
        image (Tensor[3, H, W]): uint8.
        pred_boxes (Tensor[K, 4]), pred_scores (Tensor[K]), pred_labels (Tensor[K]).
        gt_boxes (Tensor[N, 4]), gt_labels (Tensor[N]): optional.
        score_threshold, max_detections: which detections are drawn (the best ones).
        line_width: None: scaled to the image (:func:`drawing_scale`).
        pred_color: one colour for every detection, or None: a colour per class.

    Returns:
        Tensor[3, H, W] uint8.
    """
    picture = image.detach().cpu()
    if gt_boxes is not None and len(gt_boxes):
        gt_names = [_label_name(label, class_names) for label in gt_labels.tolist()] if gt_labels is not None else None
        picture = draw_boxes(picture, gt_boxes, GT_COLOR, gt_names, line_width)
    scores = pred_scores.detach().cpu()
    keep = torch.argsort(scores, descending=True)[:max_detections]
    keep = keep[scores[keep] >= score_threshold].flip(0)  # best drawn last, on top
    if len(keep):
        labels = pred_labels.detach().cpu()[keep].tolist()
        names = [f"{_label_name(label, class_names)} {score:.2f}" for label, score in zip(labels, scores[keep].tolist())]
        colors = [class_color(label) for label in labels] if pred_color is None else pred_color
        picture = draw_boxes(picture, pred_boxes.detach().cpu()[keep], colors, names, line_width)
    return picture


def draw_proposals(
    image: Tensor,
    proposals: Tensor,
    num_proposals: int = 100,
    gt_boxes: Tensor | None = None,
    line_width: int | None = None,
) -> Tensor:
    """The first ``num_proposals`` RPN proposals (Tensor[R, 4], sorted by objectness) in
    blue over the ground truth in green; returns Tensor[3, H, W] uint8. ``line_width``:
    None: half the scaled width (:func:`drawing_scale`), as many boxes overlap."""
    picture = image.detach().cpu()
    line_width = line_width or max(1, drawing_scale(*picture.shape[-2:])[0] // 2)
    if gt_boxes is not None and len(gt_boxes):
        picture = draw_boxes(picture, gt_boxes, GT_COLOR, line_width=line_width + 1)
    top = proposals.detach().cpu()[:num_proposals]
    if len(top):
        picture = draw_boxes(picture, top, PROPOSAL_COLOR, line_width=line_width)
    return picture


def save_picture(picture: Tensor, path: str | Path) -> Path:
    """Write a uint8 (3, H, W) picture (PNG, or the format of ``path``'s suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture.permute(1, 2, 0).contiguous().numpy()).save(path)
    return path
