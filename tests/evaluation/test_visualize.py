"""Drawn pictures: shape, dtype, colours where the boxes are."""

import numpy as np
import torch
from PIL import Image

from frcnn.evaluation.visualize import GT_COLOR, PRED_COLOR, PROPOSAL_COLOR, draw_detections, draw_proposals, save_picture


def _color_at(picture, y, x):
    return tuple(picture[:, y, x].tolist())


def test_draw_detections_gt_and_predictions(tmp_path):
    image = torch.zeros(3, 64, 96, dtype=torch.uint8)
    picture = draw_detections(
        image,
        pred_boxes=torch.tensor([[50.0, 30, 90, 60], [0, 0, 10, 10]]),
        pred_scores=torch.tensor([0.9, 0.1]),  # the second is under the threshold
        pred_labels=torch.tensor([2, 1]),
        gt_boxes=torch.tensor([[4.0, 20, 40, 60]]),
        gt_labels=torch.tensor([1]),
        class_names=["background", "circle", "square"],
    )
    assert picture.shape == image.shape and picture.dtype == torch.uint8
    assert _color_at(picture, 40, 4) == GT_COLOR  # left edge of the GT box
    assert _color_at(picture, 45, 90) == PRED_COLOR  # right edge of the detection
    assert _color_at(picture, 5, 0) == (0, 0, 0)  # low-score detection not drawn
    assert image.sum() == 0  # input untouched
    path = save_picture(picture, tmp_path / "pictures" / "0.png")
    assert np.array_equal(np.asarray(Image.open(path)), picture.permute(1, 2, 0).numpy())


def test_draw_proposals_top_only():
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    proposals = torch.tensor([[10.0, 10, 30, 30], [40, 40, 60, 60]])
    picture = draw_proposals(image, proposals, num_proposals=1)
    assert _color_at(picture, 20, 10) == PROPOSAL_COLOR
    assert _color_at(picture, 50, 40) == (0, 0, 0)
