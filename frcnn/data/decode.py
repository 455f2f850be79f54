"""Images to uint8 RGB tensors: any PIL mode (`pil_to_uint8_rgb`), and a row's encoded bytes (`decode_rgb`).

Modes and how they become 8-bit RGB (one rule per mode, never per dataset):
    RGB, L, P, RGBA, LA, CMYK, YCbCr, 1: PIL's own conversion; alpha is dropped, not composited.
    I;16, I;16L, I;16B, I;16N (16-bit unsigned): linear, 0..65535 -> 0..255 (v * 255 / 65535, rounded).
    I (32-bit signed): PIL opens 16-bit TIFFs and some PNGs as `I`; when every value lies in 0..65535
        it is scaled like I;16, otherwise linearly from the int32 range -2**31..2**31-1.
    F (32-bit float): values in 0..1 are scaled by 255; otherwise the image's own min..max maps
        to 0..255 (NaN -> 0). A float image has no fixed range; this keeps it visible.
PIL's default `convert("RGB")` would clip 16-bit and float values at 255 (a 16-bit PNG comes out
almost white), hence the explicit scaling.

EXIF orientation is ignored: COCO boxes refer to the stored pixel grid. (For a user's photo,
the predict helper applies `ImageOps.exif_transpose` itself and then calls `pil_to_uint8_rgb`.)
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from frcnn.data.row_checks import BadRow, TOO_MANY_PIXELS, UNDECODABLE_IMAGE

# Well above COCO (640 x 480) and most cameras (8000 x 8000), below PIL's bomb warning (89 MP).
DEFAULT_MAX_PIXELS = 64_000_000

_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def pil_to_uint8_rgb(image: Image.Image) -> torch.Tensor:
    """`image` in any PIL mode as RGB (see the module docstring for each mode's rule).

    Returns:
        image (Tensor[3, H, W], uint8)

    Raises:
        ValueError: a mode PIL cannot convert to RGB (the message names it).
    """
    if image.mode in _UINT16_MODES or image.mode in ("I", "F"):
        gray = _scaled_to_uint8(np.asarray(image), image.mode)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # PIL warns when a palette's transparency goes to RGB directly
        rgb = np.asarray(image.convert("RGB"))
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()  # a copy: PIL's buffer is read-only


def _scaled_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """A 16-bit, 32-bit integer or float (H, W) array mapped linearly to uint8 (H, W)."""
    values = values.astype(np.float64)
    if mode == "F":
        finite = np.isfinite(values)
        low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
        if 0 <= low and high <= 1:
            low, high = 0.0, 1.0
        values[~finite] = low
    elif mode == "I" and (values.min(initial=0) < 0 or values.max(initial=0) > 65535):
        low, high = _INT32_MIN, _INT32_MAX
    else:
        low, high = 0.0, 65535.0
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip(np.rint((values - low) * scale), 0, 255).astype(np.uint8)


def decode_rgb(encoded: dict | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Decode a row's image (bytes, or a `datasets.Image(decode=False)` dict) to RGB.

    The size is read from the header first: an image over `max_pixels` is refused before its
    pixels are decoded (PIL's own decompression-bomb limit, 2 x 89 MP, is refused the same way).

    Returns:
        image (Tensor[3, H, W], uint8)

    Raises:
        BadRow: kind `undecodable_image` (empty, truncated, corrupt, not an image, unreadable
            path) or `too_many_pixels`.
    """
    try:
        if isinstance(encoded, dict):
            encoded = encoded["bytes"] if encoded.get("bytes") is not None else _read(encoded.get("path"))
        if not encoded:
            raise BadRow(UNDECODABLE_IMAGE, "no image bytes")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(encoded)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise BadRow(TOO_MANY_PIXELS, f"{width}x{height} = {width * height} pixels > data.max_pixels={max_pixels}")
                image.load()
                return pil_to_uint8_rgb(image)
    except BadRow:
        raise
    except UnidentifiedImageError:
        raise BadRow(UNDECODABLE_IMAGE, f"not an image format PIL reads ({len(encoded)} bytes, starting {encoded[:12]!r})") from None
    except Image.DecompressionBombError as error:
        raise BadRow(TOO_MANY_PIXELS, f"{error} (data.max_pixels={max_pixels})") from None
    except (OSError, SyntaxError, ValueError, TypeError, KeyError) as error:
        raise BadRow(UNDECODABLE_IMAGE, f"{type(error).__name__}: {_first_line(error)}") from None


def _read(path: str | None) -> bytes:
    if not path:
        raise BadRow(UNDECODABLE_IMAGE, "the row has neither image bytes nor a path")
    with open(path, "rb") as file:
        return file.read()


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
