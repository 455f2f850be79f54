"""Running a detector over a validation loader, with boxes mapped to original pixels.

Batches are ``(images, targets)`` from ``DetectionDataModule.val_dataloader()``: images uint8
(3, H, W) resized by the data module, targets with ``boxes`` in those pixels, ``size`` (H, W)
and ``orig_size`` (H0, W0). ``x * W0 / W`` and ``y * H0 / H`` map a box back to the stored image.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from frcnn.ops.rescale import to_original_pixels


@torch.inference_mode()
def predict(
    model: nn.Module,
    batches: Iterable[tuple[list[Tensor], list[dict[str, Tensor]]]],
    device: torch.device,
    amp_dtype: torch.dtype | None = torch.float16,
) -> Iterator[tuple[list[Tensor], list[dict[str, Tensor]], list[dict[str, Tensor]]]]:
    """Yield ``(images, targets, detections)`` per batch, all on the CPU.

    ``detections`` boxes are in the input images' pixels (draw them on ``images``); map
    them with :func:`in_original_pixels` for COCO scoring. On CUDA the
    forward pass runs under autocast with ``amp_dtype`` (None: full precision).
    """
    model.eval()
    autocast = (
        torch.autocast("cuda", dtype=amp_dtype)
        if device.type == "cuda" and amp_dtype is not None
        else contextlib.nullcontext()
    )
    for images, targets in batches:
        with autocast:
            detections = model([image.to(device, non_blocking=True) for image in images])
        detections = [{key: value.float().cpu() if value.is_floating_point() else value.cpu() for key, value in d.items()} for d in detections]
        yield images, targets, detections


def in_original_pixels(
    detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]
) -> list[dict[str, Tensor]]:
    """Copies of ``detections`` with ``boxes`` mapped to original pixels (``COCOEvaluator.update``'s input)."""
    return [
        {**detection, "boxes": to_original_pixels(detection["boxes"], target["size"], target["orig_size"])}
        for detection, target in zip(detections, targets)
    ]
