"""The user's own pictures: find them (file, folder, glob, list file) and read them as RGB.

Images are read with their EXIF orientation applied, so boxes refer to the image as a viewer
shows it, and any PIL mode is converted by :func:`frcnn.data.decode.pil_to_uint8_rgb`.

Image ids (for a COCO results file) come from a list file's second column (``path id``) or
from a numeric file name (COCO's ``000000397133.jpg`` -> 397133); other images have none.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from frcnn.data.decode import pil_to_uint8_rgb

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})
ImageInput = Union[str, os.PathLike, Image.Image, Tensor, np.ndarray]


class NoImagesError(ValueError):
    """An input that names no image; ``str(error)`` is one line for the user."""


class ImageReadError(ValueError):
    """An image that cannot be read; ``str(error)`` names the file and the reason in one line."""


@dataclass(frozen=True)
class ImageFile:
    path: Path
    image_id: int | None = None


def collect_images(spec: str | os.PathLike) -> list[ImageFile]:
    """The images ``spec`` names: an image file, a folder (recursive), a glob, or a list file.

    A list file (.txt/.lst/.list) holds one image per line, ``path`` or ``path id``; relative
    paths are relative to the list file; ``#`` starts a comment line. Files a list names are
    kept even when missing: reading them fails later, and is reported per file.

    Raises:
        NoImagesError: nothing matches.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        files = [ImageFile(p, _numeric_id(p)) for p in sorted(path.rglob("*")) if _is_image(p)]
    elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        files = _read_list(path)
    elif path.is_file():
        files = [ImageFile(path, _numeric_id(path))]
    else:
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(str(spec)), recursive=True))
        files = [ImageFile(p, _numeric_id(p)) for p in matches if p.is_file()]
    if not files:
        raise NoImagesError(
            f"input={spec} matches no image: give an image file, a folder, a glob (quoted) "
            f"or a .txt file listing paths ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return files


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _numeric_id(path: Path) -> int | None:
    return int(path.stem) if path.stem.isdigit() else None


def _read_list(list_file: Path) -> list[ImageFile]:
    files = []
    for line in list_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, last = line.rpartition(" ") if " " in line else ("", "", "")
        name, image_id = (name.strip(), int(last)) if name and last.lstrip("-").isdigit() else (line, None)
        path = Path(name).expanduser()
        path = path if path.is_absolute() else list_file.parent / path
        files.append(ImageFile(path, image_id if image_id is not None else _numeric_id(path)))
    return files


def load_image(source: ImageInput) -> Tensor:
    """Any supported input as Tensor[3, H, W] uint8 RGB.

    Args:
        source: a file path (EXIF orientation applied), a PIL image (EXIF applied), a
            tensor ``[3, H, W]`` / ``[1, H, W]`` / ``[H, W]`` (uint8 0-255 or float 0-1; a 4th
            channel is dropped), or a NumPy array ``[H, W]`` / ``[H, W, 3|4]`` (as PIL reads it;
            a float array, like a float tensor, in 0-1; 16-bit as PIL's ``I;16``).

    Raises:
        ImageReadError: a missing, unreadable or oddly shaped input, a dtype PIL cannot read, or float
            values outside 0-1 (a 0-255 float image would otherwise become white): one line
            saying what to pass instead.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ImageReadError(f"{path}: file not found")
        try:
            with Image.open(path) as image:
                return _from_pil(image)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            message = message.replace(f" {str(path)!r}", "")  # PIL repeats the path
            raise ImageReadError(f"{path}: not a readable image ({message})") from None
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (1, 3, 4)):
            raise ImageReadError(f"a NumPy image must be [H, W] or [H, W, 1|3|4], got shape {source.shape}")
        if source.dtype.kind == "f":
            hwc = torch.from_numpy(np.ascontiguousarray(source))
            return _from_tensor(hwc if hwc.dim() == 2 else hwc.permute(2, 0, 1))
        try:
            image = Image.fromarray(np.ascontiguousarray(source))
        except (TypeError, ValueError):
            raise ImageReadError(f"a NumPy image of {source.dtype} {source.shape} is not one PIL reads: pass uint8 (0-255) or float (0-1)") from None
        return _from_pil(image)
    if isinstance(source, Tensor):
        return _from_tensor(source)
    raise ImageReadError(f"cannot read an image from a {type(source).__name__}")


def _from_pil(image: Image.Image) -> Tensor:
    return pil_to_uint8_rgb(ImageOps.exif_transpose(image))


def _from_tensor(image: Tensor) -> Tensor:
    image = image.detach().cpu()
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ImageReadError(f"a tensor image must be [3, H, W], [1, H, W] or [H, W], got shape {tuple(image.shape)}")
    image = image[:3].expand(3, -1, -1)
    if image.is_floating_point():
        low, high = (image.amin().item(), image.amax().item()) if image.numel() else (0.0, 1.0)
        if not 0 <= low <= high <= 1:  # NaN fails too
            raise ImageReadError(
                f"a float image must hold values in 0-1, got {low:g}..{high:g}: divide a 0-255 image by 255, or pass uint8"
            )
        image = (image * 255).round()
    elif image.dtype != torch.uint8:
        raise ImageReadError(f"a tensor image must be uint8 (0-255) or float (0-1), got {image.dtype}")
    return image.to(torch.uint8).contiguous()


class ImageFileDataset(Dataset):
    """``files[i]`` read and prepared, for a ``DataLoader`` (``collate_fn=list``).

    Each item: ``{"index", "image" (Tensor[3, H0, W0] uint8 | None), "input" (``prepare(image)``
    | None), "error" (str | None)}``; a file that cannot be read gives ``error``, not an exception.
    """

    def __init__(self, files: list[ImageFile], prepare: Callable[[Tensor], Tensor]) -> None:
        self.files = files
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            image = load_image(self.files[index].path)
        except ImageReadError as error:
            return {"index": index, "image": None, "input": None, "error": str(error)}
        return {"index": index, "image": image, "input": self.prepare(image), "error": None}
