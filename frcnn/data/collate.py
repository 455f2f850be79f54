"""Batch detection samples without padding: the model pads on the device."""

import torch


def collate_detection(
    samples: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """[(image, target), ...] → (images, targets): lists of length B, images (Tensor[3, Hi, Wi], uint8)."""
    images = [image for image, _ in samples]
    targets = [target for _, target in samples]
    return images, targets
