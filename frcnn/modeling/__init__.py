"""Faster R-CNN R50-FPN, one module per stage (see ``frcnn.modeling.detector``)."""

from frcnn.modeling.detector import FasterRCNN

__all__ = ["FasterRCNN"]
