"""Run an exported detector (``python export.py``) with NumPy, onnxruntime and PIL only: no torch.

    from frcnn.export.runtime import OnnxDetector

    detector = OnnxDetector("model.onnx")                  # CUDA when onnxruntime has it, else the CPU
    results = detector(["a.jpg", pil_image, hwc_uint8_array])
    results[0]["boxes"], results[0]["scores"], results[0]["labels"], results[0]["names"]

The file takes ``images`` uint8 ``[B, 3, H, W]`` (one size per call) and returns ``boxes``
``[N, 4]`` (xyxy, input pixels), ``scores`` ``[N]``, ``labels`` ``[N]`` and ``batch_index``
``[N]``; ``OnnxDetector.run`` is that call, ``detect`` and ``__call__`` group images of equal
size into calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "OnnxDetector"]

FORMAT = "frcnn-detector"  # metadata "format" of the files frcnn.export writes
FORMAT_VERSION = 1  # metadata "format_version": inputs, outputs and metadata of this reader
OUTPUT_NAMES = ("boxes", "scores", "labels", "batch_index")
ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


class ModelFileError(Exception):
    """A model file that cannot be run; ``str(error)`` is one line for the user."""


class OnnxDetector:
    """An exported detector in an onnxruntime session.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers; None: CUDA when available, then the CPU.
        threads: intra-op threads (None: onnxruntime's default, one per core).

    Attributes: ``class_names`` (index = label, 0 = background), ``label_to_category_id``,
    ``resize`` (the resize inside the file), ``score_thresh``, ``settings`` (the model's config).
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path).expanduser()
        if not path.is_file():
            raise ModelFileError(f"model file not found: {path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as error:  # onnxruntime raises its own InvalidProtobuf, Fail, InvalidGraph ...
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelFileError(f"{path} is not a readable ONNX model ({reason[:200]}): export it with `python export.py`") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if metadata.get("format") != FORMAT:
            raise ModelFileError(f"{path} is an ONNX model, but not a detector exported by frcnn (`python export.py`)")
        if metadata.get("format_version") != str(FORMAT_VERSION):
            raise ModelFileError(
                f"{path} is an frcnn export of format version {metadata.get('format_version')}, this reader runs "
                f"version {FORMAT_VERSION}: export the checkpoint again with this frcnn"
            )
        self.path = path
        self.class_names: list[str] = json.loads(metadata["class_names"])
        self.label_to_category_id = json.loads(metadata["label_to_category_id"])
        self.resize: dict[str, Any] = json.loads(metadata["resize"])
        self.score_thresh: float = json.loads(metadata["score_thresh"])
        self.settings: dict[str, Any] = json.loads(metadata["settings"])

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """One call of the file: ``images [B, 3, H, W]`` uint8 → boxes, scores, labels, batch_index."""
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1] != 3:
            shape = getattr(images, "shape", type(images).__name__)
            raise ValueError(f"images must be a uint8 array [B, 3, H, W] (RGB), got shape {shape}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (0-255), got {images.dtype}: convert them, e.g. (x * 255).round().astype(np.uint8)")
        if min(images.shape) == 0:
            return {name: np.zeros((0, 4) if name == "boxes" else (0,), dtype) for name, dtype in
                    zip(OUTPUT_NAMES, (np.float32, np.float32, np.int64, np.int64))}  # fmt: skip
        outputs = self.session.run(list(OUTPUT_NAMES), {"images": np.ascontiguousarray(images)})
        return dict(zip(OUTPUT_NAMES, outputs))

    def detect(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Detections (boxes, scores, labels) per image ``[3, H, W]`` uint8; images of one size share a call."""
        results: list[dict[str, np.ndarray]] = [{}] * len(images)
        for shape in dict.fromkeys(image.shape for image in images):
            members = [index for index, image in enumerate(images) if image.shape == shape]
            outputs = self.run(np.stack([images[index] for index in members]))
            for slot, index in enumerate(members):
                mine = outputs["batch_index"] == slot
                results[index] = {key: outputs[key][mine] for key in ("boxes", "scores", "labels")}
        return results

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> list[dict[str, Any]]:
        """Detections per image (a path, PIL image, or uint8 array ``[H, W, 3]``): boxes, scores,
        labels and names."""
        single = isinstance(images, (str, os.PathLike, Image.Image, np.ndarray))
        results = self.detect([to_chw(image) for image in ([images] if single else images)])
        for result in results:
            result["names"] = [self.class_names[label] for label in result["labels"].tolist()]
        return results


def to_chw(image: ImageLike) -> np.ndarray:
    """A path (EXIF orientation applied), PIL image or ``[H, W, 3]`` uint8 array → ``[3, H, W]`` uint8 RGB."""
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"an image must be a path, a PIL image or a uint8 array [H, W, 3] (RGB), got {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"an image array must be uint8 (0-255), got {image.dtype}")
    return np.ascontiguousarray(image.transpose(2, 0, 1))
