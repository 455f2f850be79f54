"""Faster R-CNN R50-FPN written from scratch; see frcnn.modeling.FasterRCNN and frcnn.Detector."""

from typing import Any

__all__ = ["Detector"]


def __getattr__(name: str) -> Any:
    # Lazy: `import frcnn.data...` in data-loader workers should not pull in the model and Hydra.
    if name == "Detector":
        from frcnn.detector import Detector

        return Detector
    raise AttributeError(f"module 'frcnn' has no attribute {name!r}")
