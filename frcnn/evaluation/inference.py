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


def to_original_pixels(boxes: Tensor, size: Tensor, orig_size: Tensor) -> Tensor:
    """boxes (Tensor[K, 4]) xyxy in an image of ``size`` (H, W) -> pixels of ``orig_size`` (H0, W0)."""
    (height, width), (orig_height, orig_width) = size.tolist(), orig_size.tolist()
    scale_x, scale_y = orig_width / width, orig_height / height
    return boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])


@torch.inference_mode()
def predict(
    model: nn.Module,
    batches: Iterable[tuple[list[Tensor], list[dict[str, Tensor]]]],
    device: torch.device,
    amp_dtype: torch.dtype | None = torch.float16,
) -> Iterator[tuple[list[Tensor], list[dict[str, Tensor]], list[dict[str, Tensor]]]]:
    """Yield ``(images, targets, detections)`` per batch, all on the CPU.

    ``detections`` boxes are in the input images' pixels (draw them on ``images``); map
    them and the targets with :func:`to_original_pixels` for COCO scoring. On CUDA the
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


def original_pixels(
    targets: list[dict[str, Tensor]], detections: list[dict[str, Tensor]]
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """(detections, targets) with ``boxes`` mapped to original pixels, ready for ``COCOEvaluator.update``."""
    mapped_detections = [
        {**detection, "boxes": to_original_pixels(detection["boxes"], target["size"], target["orig_size"])}
        for detection, target in zip(detections, targets)
    ]
    mapped_targets = [
        {**target, "boxes": to_original_pixels(target["boxes"], target["size"], target["orig_size"])}
        for target in targets
    ]
    return mapped_detections, mapped_targets
