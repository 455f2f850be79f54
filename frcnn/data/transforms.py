"""Per-sample geometry: clip and drop degenerate boxes, resize, horizontal flip.

Boxes are `xyxy` in absolute pixels of the image they come with. All box geometry is done by
`torchvision.transforms.v2` on `tv_tensors.BoundingBoxes`, so boxes always move with the image.
"""

from collections.abc import Sequence
from typing import Literal

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

ResizeMode = Literal["keep_ratio", "square", "none"]


def build_resize(mode: ResizeMode, min_size: int, max_size: int, square_size: int) -> v2.Transform:
    """`keep_ratio`: short side to `min_size` unless the long side would exceed `max_size`
    (then long side to `max_size`); `square`: `square_size` × `square_size`; `none`: identity."""
    if mode == "keep_ratio":
        return v2.Resize(min_size, max_size=max_size, antialias=True)
    if mode == "square":
        return v2.Resize((square_size, square_size), antialias=True)
    if mode == "none":
        return v2.Identity()
    raise ValueError(f"resize must be 'keep_ratio', 'square' or 'none', got {mode!r}")


def inference_min_size(min_size: int | Sequence[int]) -> int:
    """The short side evaluation and prediction resize to: `min_size`, or the last of a list of
    training sizes (torchvision's rule; Detectron2's 1x trains on 640..800 and tests at 800)."""
    return min_size if isinstance(min_size, int) else int(min_size[-1])


class DetectionTransform:
    """Clip boxes to the image, drop boxes under 1 px a side, resize, and maybe flip.

    Args:
        resize: one resize, or several to choose from per image (multi-scale training).

    The flip and the resize choice are given by the caller (drawn from a seeded generator) so
    that a resumed stream reproduces the same augmentations.
    """

    def __init__(self, resize: v2.Transform | Sequence[v2.Transform]) -> None:
        self.sanitize = v2.Compose([v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)])
        self.resizes = list(resize) if isinstance(resize, Sequence) else [resize]

    @property
    def num_sizes(self) -> int:
        return len(self.resizes)

    def __call__(
        self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, flip: bool, size_index: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: image (Tensor[3, H0, W0], uint8), boxes (Tensor[N, 4]) xyxy in its pixels, labels (Tensor[N]),
        flip, and which of the resizes to apply.

        Returns: image (Tensor[3, H, W], uint8), boxes (Tensor[M, 4], float32) xyxy in the new
        pixels, labels (Tensor[M]), with M <= N after dropping degenerate boxes.
        """
        sample = {
            "image": tv_tensors.Image(image),
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image.shape[-2:])),
            "labels": labels,
        }
        sample = self.resizes[size_index](self.sanitize(sample))
        if flip:
            sample["image"] = F.horizontal_flip(sample["image"])
            sample["boxes"] = F.horizontal_flip(sample["boxes"])
        return (
            sample["image"].as_subclass(torch.Tensor),
            sample["boxes"].as_subclass(torch.Tensor).to(torch.float32),
            sample["labels"],
        )
