"""Decode a row's encoded image to a uint8 RGB tensor; a bad file raises `CorruptImageError`."""

import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


class CorruptImageError(ValueError):
    """An image that cannot be decoded (truncated, corrupt, or not an image)."""


def decode_rgb(image: dict | bytes) -> torch.Tensor:
    """Decode encoded image bytes (or a `datasets.Image(decode=False)` dict) to RGB.

    Grayscale, palette, CMYK and RGBA images are converted to RGB; EXIF orientation is ignored,
    as COCO's boxes refer to the stored pixel grid.

    Returns:
        image (Tensor[3, H, W], uint8)
    """
    if isinstance(image, dict):
        image = image["bytes"] if image.get("bytes") is not None else open(image["path"], "rb").read()
    try:
        with Image.open(io.BytesIO(image)) as pil_image:
            rgb = pil_image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise CorruptImageError(str(error)) from error
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()
