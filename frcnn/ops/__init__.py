"""Tensor operations shared by the model's stages."""

from frcnn.ops.boxes import BoxCoder, box_area, clip_boxes, nonempty_boxes, pairwise_iou
from frcnn.ops.nms import batched_nms_per_image, pad_row

__all__ = ["BoxCoder", "batched_nms_per_image", "box_area", "clip_boxes", "nonempty_boxes", "pad_row", "pairwise_iou"]
