"""Faster R-CNN, one module per stage, wired by ``frcnn.modeling.detector`` (see ``conf/model/``)."""

from frcnn.modeling.detector import FasterRCNN

__all__ = ["FasterRCNN"]
