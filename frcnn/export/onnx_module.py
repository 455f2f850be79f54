"""An exported file behind the eval-mode interface of ``FasterRCNN``, for ``frcnn.Detector``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from frcnn.export.runtime import OnnxDetector

__all__ = ["OnnxModule"]


class OnnxModule(nn.Module):
    """``model(images)`` → one dict per image (``boxes [K, 4]`` in its pixels, ``scores``,
    ``labels``), as ``FasterRCNN`` in eval mode returns, from an onnxruntime session.

    The file resizes the images itself: the ``Detector`` around it hands them over unresized.
    """

    def __init__(self, runner: OnnxDetector) -> None:
        super().__init__()
        self.runner = runner
        self.num_classes = len(runner.class_names)

    def forward(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        results = self.runner.detect([image.cpu().numpy() for image in images])
        return [{key: torch.from_numpy(value) for key, value in result.items()} for result in results]

    def proposals(self, images: Sequence[Tensor]) -> list[Tensor]:
        raise ValueError("an exported model returns detections only: drop proposals=true, or use the checkpoint")
