"""Input side of the detector: images of any size → one normalised, padded batch.

Runs on the images' device, so a data loader can ship compact uint8 images and let the
accelerator convert, normalise and resize them. Boxes are ``xyxy`` in each input image's
pixels on the way in and on the way out; inside the model they live in the resized frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frcnn.modeling.structures import GroundTruth, ImageBatch
from frcnn.ops.rescale import to_original_pixels

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageTransform", "image_sizes"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageTransform(nn.Module):
    """Normalise, resize keeping the aspect ratio, and pad a list of images into a batch.

    Args:
        min_size, max_size: the shorter side is scaled to ``min_size`` unless the longer
            side would then exceed ``max_size`` (torchvision's rule and interpolation).
        resize: False when the data pipeline has already resized the images.
        size_divisible: the padded batch's height and width are multiples of this.
        image_mean, image_std: per-channel normalisation of images scaled to [0, 1].
    """

    def __init__(
        self,
        min_size: int = 800,
        max_size: int = 1333,
        resize: bool = True,
        size_divisible: int = 32,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.min_size = min_size
        self.max_size = max_size
        self.resize = resize
        self.size_divisible = size_divisible
        self.register_buffer("image_mean", torch.tensor(image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(3, 1, 1), persistent=False)

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> tuple[ImageBatch, GroundTruth | None]:
        """Batch ``images`` (each ``[3, Hi, Wi]``, uint8 0–255 or float 0–1) and their targets."""
        prepared = [self._prepare(image) for image in images]
        sizes = image_sizes(prepared)
        batch = ImageBatch(self._pad(prepared), sizes)
        if targets is None:
            return batch, None
        scale = sizes.float() / image_sizes(images).float()  # [B, 2] (height, width) ratios
        return batch, self._ground_truth(targets, scale)

    def map_back(self, boxes: Tensor, batch: ImageBatch, original_sizes: Tensor) -> Tensor:
        """Boxes ``[B, D, 4]`` in the batch frame → the input images' pixels (``original_sizes [B, 2]``)."""
        return to_original_pixels(boxes, batch.image_sizes, original_sizes)

    def _prepare(self, image: Tensor) -> Tensor:
        image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        image = (image - self.image_mean) / self.image_std
        if not self.resize:
            return image
        height, width = image.shape[-2:]
        scale = min(self.min_size / min(height, width), self.max_size / max(height, width))
        return F.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]

    def _pad(self, images: list[Tensor]) -> Tensor:
        height = max(image.shape[-2] for image in images)
        width = max(image.shape[-1] for image in images)
        height = math.ceil(height / self.size_divisible) * self.size_divisible
        width = math.ceil(width / self.size_divisible) * self.size_divisible
        batch = images[0].new_zeros((len(images), 3, height, width))
        for slot, image in zip(batch, images):
            slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
        return batch

    @staticmethod
    def _ground_truth(targets: Sequence[dict[str, Tensor]], scale: Tensor) -> GroundTruth:
        num_gt = max(1, max(len(target["boxes"]) for target in targets))
        boxes = scale.new_zeros((len(targets), num_gt, 4))
        labels = torch.zeros((len(targets), num_gt), dtype=torch.int64, device=scale.device)
        valid = torch.zeros((len(targets), num_gt), dtype=torch.bool, device=scale.device)
        xyxy_scale = scale.flip(-1).repeat(1, 2)  # [B, 4] (w, h, w, h) ratios
        for index, target in enumerate(targets):
            count = len(target["boxes"])
            boxes[index, :count] = target["boxes"].to(boxes) * xyxy_scale[index]
            labels[index, :count] = target["labels"]
            valid[index, :count] = True
        return GroundTruth(boxes, labels, valid)


def image_sizes(images: Sequence[Tensor]) -> Tensor:
    """``[B, 2]`` int64 (height, width) of ``images`` on their device.

    Written by fill kernels from Python ints, not copied from host memory as
    ``torch.tensor(sizes, device=...)`` would, which makes the host wait on a GPU.
    """
    sizes = torch.empty((len(images), 2), dtype=torch.int64, device=images[0].device)
    for row, image in zip(sizes, images):
        row[0], row[1] = image.shape[-2:]
    return sizes
