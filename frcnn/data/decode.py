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


def pil_to_uint8_rgb(image: Image.Image) -> torch.Tensor:
    """Any PIL mode (L, P, RGBA, CMYK, I;16 / I, F, ...) as RGB: Tensor[3, H, W] uint8.

    16-bit (and 32-bit integer) images are scaled linearly from 0..65535 to 0..255; float
    images are taken as 0..1 when their maximum is at most 1, else as 0..255.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        else:
            scale = 255.0 / 65535.0
        gray = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
        return torch.from_numpy(gray)[None].expand(3, -1, -1).contiguous()
    rgb = np.asarray(image.convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()
