"""Lightning side of the app: the LightningModule, its schedules and callbacks."""

from frcnn.lit.module import DetectionModule

__all__ = ["DetectionModule"]
