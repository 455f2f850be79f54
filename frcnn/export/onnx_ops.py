"""ONNX translations of the export's custom ops, for ``torch.onnx.export(custom_translation_table=...)``.

No ``from __future__ import annotations`` here: onnxscript reads the functions' type hints.
"""

import torch
from onnxscript import FLOAT, INT64
from onnxscript import opset18 as op

import frcnn.export.nms  # noqa: F401  (registers torch.ops.frcnn_export.nms)

__all__ = ["TRANSLATIONS"]

_INT64_MAX = 2**63 - 1
_LOWEST_FLOAT32 = -3.4028234663852886e38  # NonMaxSuppression keeps scores above it: all but -inf


def nms(boxes: FLOAT, scores: FLOAT, iou_threshold: float) -> INT64:
    """``frcnn_export::nms`` → one ``NonMaxSuppression`` node ([S, 3] rows: image, class, box)."""
    max_per_class = op.Constant(value_ints=[_INT64_MAX])
    iou = op.Constant(value_floats=[iou_threshold])
    any_finite = op.Constant(value_floats=[_LOWEST_FLOAT32])
    return op.NonMaxSuppression(boxes, scores, max_per_class, iou, any_finite)


TRANSLATIONS = {torch.ops.frcnn_export.nms.default: nms}
