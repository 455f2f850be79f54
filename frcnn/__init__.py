"""Faster R-CNN R50-FPN written from scratch; see frcnn.modeling.FasterRCNN."""
