"""One Hub-schema row → one training or validation sample: decode, check, targets, transform.

Sample contract (boxes `xyxy` in absolute pixels of the image they come with):
    image (Tensor[3, H, W], uint8) RGB after resize (before any padding)
    target: boxes (Tensor[N, 4], float32), labels (Tensor[N], int64) in 1..num_classes-1
            (the row's 0-based `category` + 1; 0 is background; crowd and difficult boxes left out),
            image_id (Tensor[], int64), orig_size (Tensor[2], int64) = (H0, W0) of the stored
            image, size (Tensor[2], int64) = (H, W).
A prediction maps back to the stored image's pixels with x * W0 / W and y * H0 / H.
"""

from __future__ import annotations

import numpy as np
import torch

from frcnn.data.decode import DEFAULT_MAX_PIXELS, decode_rgb
from frcnn.data.row_checks import BadRow, row_targets
from frcnn.data.source import Row
from frcnn.data.transforms import DetectionTransform

Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]


class SampleMaker:
    """Turns rows into samples, or says why a row cannot make one.

    Args:
        transform: clip / drop / resize (`DetectionTransform`).
        num_classes: classes including background; labels outside 1..num_classes-1 are bad rows.
        seed: the flip seed.
        hflip_prob: probability of a horizontal flip, drawn per image from (seed, epoch, image_id),
            so that a resumed stream reproduces the same augmentations; so is the choice of the
            transform's resize when it has several (multi-scale training).
        skip_empty: a row left without a box once clipped and resized is a bad row (training).
        max_pixels: images above this many pixels are skipped (read from the header, not decoded).
    """

    def __init__(
        self,
        transform: DetectionTransform,
        *,
        num_classes: int,
        seed: int = 0,
        hflip_prob: float = 0.0,
        skip_empty: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.transform = transform
        self.num_classes = num_classes
        self.seed = seed
        self.hflip_prob = hflip_prob
        self.skip_empty = skip_empty
        self.max_pixels = max_pixels

    def __call__(self, row: Row, epoch: int) -> tuple[BadRow | None, Sample | None, dict[str, int]]:
        """(None, sample, counts) or (problem, None, counts) for a row that cannot make a sample;
        counts: the boxes dropped and repairs made (`row_checks.ROW_COUNT_KINDS`)."""
        image_id = int(row["image_id"])
        try:
            image = decode_rgb(row["image"], self.max_pixels)
            boxes, labels, iscrowd, counts = row_targets(row, image.shape[-2:], self.num_classes)
        except BadRow as bad:
            return bad, None, {}
        boxes, labels = boxes[~iscrowd], labels[~iscrowd]  # crowds and difficult: scored, never trained on
        rng = np.random.default_rng([self.seed, epoch, image_id])
        flip = self.hflip_prob > 0 and rng.random() < self.hflip_prob
        size_index = int(rng.integers(self.transform.num_sizes)) if self.transform.num_sizes > 1 else 0
        orig_size = image.shape[-2:]
        image, boxes, labels = self.transform(image, boxes, labels, flip, size_index)
        if self.skip_empty and len(boxes) == 0:
            return BadRow("no_box_after_clipping", "no box left once resized"), None, counts
        target = {
            "boxes": boxes,
            "labels": labels,
            "image_id": torch.tensor(image_id, dtype=torch.int64),
            "orig_size": torch.tensor(orig_size, dtype=torch.int64),
            "size": torch.tensor(image.shape[-2:], dtype=torch.int64),
        }
        return None, (image, target), counts
