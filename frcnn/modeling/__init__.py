"""Faster R-CNN, one module per stage, wired by ``frcnn.modeling.faster_rcnn`` (see ``conf/model/``)."""

from frcnn.modeling.faster_rcnn import FasterRCNN

__all__ = ["FasterRCNN"]
