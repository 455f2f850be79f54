"""`Detector`: a trained Faster R-CNN behind one call, for notebooks and ``predict.py``.

    from frcnn import Detector

    detector = Detector.from_checkpoint("outputs/.../last.ckpt", device="auto")
    results = detector(["a.jpg", pil_image, uint8_chw_tensor, hwc_numpy_array])
    results[0].boxes, results[0].scores, results[0].labels, results[0].names
    picture = detector.draw("a.jpg", results[0])          # a PIL image here (a tensor for tensors)

Images are resized exactly as the checkpoint's data module resized them in training and
evaluation (``data.resize``, ``min_size``, ``max_size``), so a detector gives evaluate.py's
detections; boxes come back ``xyxy`` in each input image's own pixels (EXIF-rotated as shown).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from frcnn.checkpoint import LoadedCheckpoint, build_model, coco_layout, load_checkpoint
from frcnn.data.image_files import ImageInput, ImageReadError, load_image
from frcnn.data.transforms import build_resize, inference_min_size
from frcnn.evaluation.visualize import draw_detections, draw_proposals
from frcnn.ops.rescale import to_original_pixels

__all__ = ["Detections", "Detector", "build_model", "inference_settings"]

# A bare state dict (python -m frcnn.convert) has no data config: torchvision's COCO resize.
_BARE_RESIZE = {"mode": "keep_ratio", "min_size": 800, "max_size": 1333, "square_size": 800}


@dataclass
class Detections:
    """One image's detections, best first; boxes (Tensor[K, 4]) xyxy in its original pixels,
    scores (Tensor[K]), labels (Tensor[K], 1..C-1), names (K class names); image_size (H, W)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    names: list[str]
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, score_thresh: float) -> Detections:
        """The detections scoring at least ``score_thresh``."""
        keep = self.scores >= score_thresh
        names = [name for name, kept in zip(self.names, keep.tolist()) if kept]
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], names, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists for JSON: boxes rounded to 0.01 px, scores to 1e-4."""
        return {
            "height": self.image_size[0],
            "width": self.image_size[1],
            "boxes": [[round(value, 2) for value in box] for box in self.boxes.tolist()],
            "scores": [round(score, 4) for score in self.scores.tolist()],
            "labels": self.labels.tolist(),
            "names": self.names,
        }


def inference_settings(
    checkpoint: LoadedCheckpoint, num_classes: int
) -> tuple[dict[str, Any], list[str], list[int] | dict[int, int] | None]:
    """What a checkpoint's model needs around it: the resize of its data config
    (``build_resize``'s options; a multi-scale run's list of sizes: its last), its class names
    (index = label) and label → category id."""
    if checkpoint.is_bare:
        class_names, label_to_category_id = coco_layout(num_classes) or (["background", *map(str, range(1, num_classes))], None)
        return dict(_BARE_RESIZE), list(class_names), label_to_category_id
    data_cfg = checkpoint.cfg.get("data", {})
    resize_cfg = {key: data_cfg.get("resize" if key == "mode" else key, value) for key, value in _BARE_RESIZE.items()}
    resize_cfg["min_size"] = inference_min_size(resize_cfg["min_size"])
    class_names = checkpoint.class_names or ["background", *map(str, range(1, num_classes))]
    return resize_cfg, list(class_names), checkpoint.label_to_category_id


def resolve_device(name: str | torch.device) -> torch.device:
    """`auto`: CUDA when there is one, else the CPU; any other name as `torch.device` reads it."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Detector:
    """A model, its class names and its input resize; see the module docstring.

    Args:
        model: a ``FasterRCNN`` (moved to ``device``, put in eval mode).
        class_names: index = label, ``class_names[0]`` = background.
        prepare: Tensor[3, H0, W0] uint8 -> Tensor[3, H, W] uint8, the model's input resize.
        label_to_category_id: label -> dataset category id (COCO results files).
        device: "auto" (CUDA when there is one), "cpu", "cuda", "cuda:N".
        amp_dtype: autocast dtype on CUDA (None: full precision); unused on the CPU.
        batch_size: images per forward pass in ``__call__``.
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        prepare: Callable[[Tensor], Tensor],
        label_to_category_id: Sequence[int] | dict[int, int] | None = None,
        device: str | torch.device = "auto",
        amp_dtype: torch.dtype | None = torch.float16,
        batch_size: int = 4,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.class_names = list(class_names)
        self.prepare = prepare
        self.label_to_category_id = label_to_category_id
        self.amp_dtype = amp_dtype
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "auto",
        amp_dtype: torch.dtype | str | None = torch.float16,
        batch_size: int = 4,
        min_size: int | None = None,
        max_size: int | None = None,
    ) -> Detector:
        """A checkpoint of the training app (.ckpt), a state dict from ``python -m frcnn.convert``
        or torchvision's as downloaded (81 or 91 classes: COCO's names and category ids).

        ``min_size``/``max_size`` replace the checkpoint's resize sizes. Raises
        :class:`~frcnn.checkpoint.CheckpointError` (one line) for a missing or foreign file.
        """
        checkpoint = load_checkpoint(path)
        model = build_model(checkpoint)
        resize_cfg, class_names, label_to_category_id = inference_settings(checkpoint, model.num_classes)
        resize_cfg.update({key: value for key, value in (("min_size", min_size), ("max_size", max_size)) if value})
        if isinstance(amp_dtype, str):
            amp_dtype = getattr(torch, amp_dtype)
        return cls(model, class_names, build_resize(**resize_cfg), label_to_category_id, device, amp_dtype, batch_size)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, batch_size: int = 4, providers: Sequence[str] | None = None) -> Detector:
        """A file of ``python export.py``, run by onnxruntime (``providers``; None: CUDA when
        available, else the CPU); the file resizes the images itself. Raises
        :class:`~frcnn.export.runtime.ModelFileError` (one line) for a file it cannot run."""
        from frcnn.export.onnx_module import OnnxModule
        from frcnn.export.runtime import OnnxDetector

        runner = OnnxDetector(path, providers)
        prepare = build_resize("none", **{key: _BARE_RESIZE[key] for key in ("min_size", "max_size", "square_size")})
        return cls(OnnxModule(runner), runner.class_names, prepare, runner.label_to_category_id, "cpu", None, batch_size)

    # ------------------------------------------------------------------ inputs

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> list[Detections]:
        """Detections for each image (a path, PIL image, uint8/float tensor or NumPy array)."""
        return self._in_batches(self.detect, images)

    def proposals(self, images: ImageInput | Sequence[ImageInput]) -> list[Tensor]:
        """The RPN proposals (Tensor[P, 4], best first) of each image, in its original pixels."""
        return self._in_batches(self.propose, images)

    def _in_batches(self, run: Callable[[list[Tensor], Tensor], list], images: ImageInput | Sequence[ImageInput]) -> list:
        originals = self._load(images)
        results = []
        for start in range(0, len(originals), self.batch_size):
            chunk = originals[start : start + self.batch_size]
            results += run([self.prepare(image) for image in chunk], self._sizes(chunk))
        return results

    @staticmethod
    def _load(images: ImageInput | Sequence[ImageInput]) -> list[Tensor]:
        single = isinstance(images, (str, os.PathLike, Image.Image, Tensor)) or (
            hasattr(images, "ndim") and not isinstance(images, (list, tuple))
        )
        if not single and len(images) == 0:
            raise ImageReadError("no images given: pass an image or a non-empty list of them")
        return [load_image(image) for image in ([images] if single else images)]

    @staticmethod
    def _sizes(images: Sequence[Tensor]) -> Tensor:
        return torch.tensor([image.shape[-2:] for image in images])

    # ------------------------------------------------------------------- model

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.amp_dtype is not None:
            return torch.autocast("cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def detect(self, inputs: Sequence[Tensor], orig_sizes: Tensor) -> list[Detections]:
        """Detections for prepared images.

        Args:
            inputs: Tensor[3, H, W] uint8 each, already ``prepare``-d (resized).
            orig_sizes (Tensor[B, 2]): (H0, W0) of the images before ``prepare``.
        """
        with self._autocast():
            outputs = self.model([image.to(self.device, non_blocking=True) for image in inputs])
        sizes = self._sizes(inputs)
        results = []
        for output, size, orig_size in zip(outputs, sizes, orig_sizes):
            labels = output["labels"].cpu()
            results.append(
                Detections(
                    boxes=to_original_pixels(output["boxes"].float().cpu(), size, orig_size),
                    scores=output["scores"].float().cpu(),
                    labels=labels,
                    names=[self.class_names[label] for label in labels.tolist()],
                    image_size=tuple(orig_size.tolist()),
                )
            )
        return results

    @torch.inference_mode()
    def propose(self, inputs: Sequence[Tensor], orig_sizes: Tensor) -> list[Tensor]:
        """RPN proposals (Tensor[P, 4], best first, original pixels) for prepared images."""
        with self._autocast():
            proposals = self.model.proposals([image.to(self.device, non_blocking=True) for image in inputs])
        sizes = self._sizes(inputs)
        return [to_original_pixels(boxes.float().cpu(), size, orig) for boxes, size, orig in zip(proposals, sizes, orig_sizes)]

    # ----------------------------------------------------------------- outputs

    def draw(
        self,
        image: ImageInput,
        result: Detections | Tensor,
        score_thresh: float = 0.3,
        max_detections: int = 100,
        num_proposals: int = 100,
    ) -> Tensor | Image.Image:
        """``image`` with ``result`` drawn: detections (a colour per class, "name score"), or
        proposals (a Tensor[P, 4] from :meth:`proposals`, the first ``num_proposals``).

        Returns a PIL image for a path or PIL input, else Tensor[3, H, W] uint8.
        """
        original = load_image(image)
        if isinstance(result, Detections):
            picture = draw_detections(original, result.boxes, result.scores, result.labels, class_names=self.class_names,
                                      score_threshold=score_thresh, max_detections=max_detections, pred_color=None)  # fmt: skip
        else:
            picture = draw_proposals(original, result, num_proposals)
        if isinstance(image, (str, os.PathLike, Image.Image)):
            return Image.fromarray(picture.permute(1, 2, 0).numpy())
        return picture
