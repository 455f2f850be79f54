"""Run a checkpoint on your own pictures: ``python predict.py ckpt=PATH input=PATH``.

``input``: an image, a folder (recursive), a glob, or a .txt file listing paths (``path [id]``).
Writes to ``output`` (default outputs/predict/DATE/TIME):

    pictures/<relative path>.jpg  each image with its detections (score >= score_thresh),
                                  or with its top RPN proposals (proposals=true)
    predictions.json              per image: file, image_id, width, height, boxes [x1, y1, x2, y2]
                                  in the image's own pixels (EXIF orientation applied), scores,
                                  labels, names; and the files skipped, with the reason
    coco_results.json             COCO results (all detections) for the images with an id: a numeric
                                  file name (000000397133.jpg -> 397133) or a list file's second column

A file that cannot be read is skipped with a warning and counted. See conf/predict.yaml.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from frcnn.data.image_files import ImageFile, ImageFileDataset, NoImagesError, collect_images
from frcnn.detector import Detections, Detector
from frcnn.checkpoint import CheckpointError
from frcnn.evaluation.coco_format import coco_results, write_json
from frcnn.evaluation.visualize import save_picture
from frcnn.export.runtime import ModelFileError
from frcnn.preflight import PreflightError, check_whole
from frcnn.progress import image_progress


class UsageError(ValueError):
    """A command-line value that cannot work; one line for the user."""


def picture_paths(files: list[ImageFile], folder: Path, suffix: str) -> list[Path]:
    """One picture path per file under ``folder``: its path relative to the files' common folder,
    with ``suffix`` (the original suffix kept in the name where two files would collide)."""
    parents = [str(file.path.expanduser().resolve().parent) for file in files]
    root = Path(os.path.commonpath(parents))
    paths, used = [], set()
    for file in files:
        relative = file.path.expanduser().resolve().relative_to(root)
        path = folder / relative.with_suffix(suffix)
        if path in used:
            path = folder / relative.with_name(f"{relative.stem}_{relative.suffix.lstrip('.')}{suffix}")
        used.add(path)
        paths.append(path)
    return paths


def _check(cfg: DictConfig) -> None:
    if not cfg.input:
        raise UsageError("no input given: pass input=IMAGE, a folder, a glob or a .txt list of paths")
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device={cfg.device} but no CUDA device is available: use device=auto or device=cpu")
    if cfg.picture_format not in ("jpg", "png"):
        raise UsageError(f"picture_format={cfg.picture_format}: use jpg or png")
    check_whole(cfg.batch_size, "batch_size", 1, "images per forward pass")
    check_whole(cfg.num_workers, "num_workers", 0, "processes reading images; 0: the main process")
    if isinstance(cfg.score_thresh, bool) or not isinstance(cfg.score_thresh, (int, float)) or not 0 <= cfg.score_thresh <= 1:
        raise UsageError(f"score_thresh={cfg.score_thresh!r}: scores are in 0..1, give a threshold in 0..1 (e.g. 0.5)")


class Recorder:
    """What a run writes: the predictions.json entries, the COCO results, and the pictures
    (drawn and encoded on two threads while the model runs on the next batch)."""

    def __init__(self, cfg: DictConfig, detector: Detector, files: list[ImageFile], out_dir: Path) -> None:
        self.cfg, self.detector, self.files, self.out_dir = cfg, detector, files, out_dir
        self.pictures = picture_paths(files, out_dir / "pictures", f".{cfg.picture_format}")
        self.entries: dict[int, dict[str, Any]] = {}
        self.skipped: list[dict[str, str]] = []
        self.coco: list[tuple[int, Detections]] = []
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.pending: deque[Future] = deque()

    def skip(self, index: int, error: str) -> None:
        self.skipped.append({"file": str(self.files[index].path), "error": error})

    def add(self, index: int, image: torch.Tensor, output: Detections | torch.Tensor) -> None:
        """Record image ``index`` (Tensor[3, H0, W0] uint8): detections, or proposals (Tensor[P, 4])."""
        cfg, file = self.cfg, self.files[index]
        entry = {"file": str(file.path), "image_id": file.image_id}
        if cfg.proposals:
            top = output[: cfg.num_proposals]
            proposals = [[round(value, 2) for value in box] for box in top.tolist()]
            self.entries[index] = {**entry, "height": image.shape[-2], "width": image.shape[-1], "proposals": proposals}
        else:
            top = output.above(cfg.score_thresh)
            self.entries[index] = {**entry, **top.to_dict()}
            if file.image_id is not None:
                self.coco.append((file.image_id, output))
        if cfg.pictures:
            self.pending.append(self.pool.submit(self._draw, image, top, self.pictures[index]))
            while len(self.pending) > 2 * cfg.batch_size:  # bounds the images held in memory
                self.pending.popleft().result()

    def _draw(self, image: torch.Tensor, result: Detections | torch.Tensor, path: Path) -> None:
        cfg = self.cfg
        save_picture(self.detector.draw(image, result, cfg.score_thresh, cfg.max_detections, cfg.num_proposals), path)

    def write(self) -> dict[str, Any]:
        """Wait for the pictures, write predictions.json (and coco_results.json); return the former."""
        while self.pending:
            self.pending.popleft().result()
        self.pool.shutdown()
        images = [self.entries[index] for index in sorted(self.entries)]
        predictions = {"checkpoint": str(Path(self.cfg.ckpt).expanduser().resolve()), "score_thresh": self.cfg.score_thresh,
                       "images": images, "skipped": self.skipped}  # fmt: skip
        write_json(predictions, self.out_dir / "predictions.json")
        if self.coco:
            image_ids = np.concatenate([np.full(len(result), image_id) for image_id, result in self.coco])
            boxes, scores, labels = (torch.cat([getattr(r, key) for _, r in self.coco]).numpy() for key in ("boxes", "scores", "labels"))
            results = coco_results(image_ids, boxes, scores, labels, self.detector.label_to_category_id)
            write_json(results, self.out_dir / "coco_results.json")
        return predictions


def load_detector(cfg: DictConfig) -> Detector:
    """The checkpoint's model in PyTorch, or (``backend=onnxruntime``) an exported file in onnxruntime."""
    if cfg.backend == "pytorch":
        return Detector.from_checkpoint(
            cfg.ckpt, cfg.device, cfg.amp_dtype, cfg.batch_size, min_size=cfg.min_size, max_size=cfg.max_size
        )
    if cfg.backend != "onnxruntime":
        raise UsageError(f"backend={cfg.backend}: use pytorch (a checkpoint) or onnxruntime (a file of export.py)")
    if cfg.proposals or cfg.min_size or cfg.max_size:
        raise UsageError("an exported model has its resize inside and returns detections only: drop proposals, min_size, max_size")
    providers = {"auto": None, "cpu": ["CPUExecutionProvider"]}.get(str(cfg.device).split(":")[0], ["CUDAExecutionProvider"])
    return Detector.from_onnx(cfg.ckpt, cfg.batch_size, providers)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Run the whole prediction; returns what predictions.json holds."""
    _check(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    files = collect_images(cfg.input)
    detector = load_detector(cfg)
    loader = DataLoader(
        ImageFileDataset(files, detector.prepare), batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=list
    )
    recorder = Recorder(cfg, detector, files, out_dir)
    tic = time.perf_counter()
    with image_progress("predict") as progress:
        task = progress.add_task("predict", total=len(files))
        for batch in loader:
            for item in (item for item in batch if item["error"] is not None):
                progress.console.print(f"predict.py: skipped {item['error']}", style="yellow", highlight=False, soft_wrap=True)
                recorder.skip(item["index"], item["error"])
            good = [item for item in batch if item["error"] is None]
            if good:
                inputs = [item["input"] for item in good]
                sizes = torch.tensor([item["image"].shape[-2:] for item in good])
                outputs = detector.propose(inputs, sizes) if cfg.proposals else detector.detect(inputs, sizes)
                for item, output in zip(good, outputs):
                    recorder.add(item["index"], item["image"], output)
            progress.advance(task, len(batch))
        predictions = recorder.write()
    seconds = time.perf_counter() - tic

    images, skipped = predictions["images"], predictions["skipped"]
    found = "proposals" if cfg.proposals else f"{sum(len(e['scores']) for e in images)} detections (score >= {cfg.score_thresh})"
    print(f"{len(images)} images, {found} in {seconds:.1f} s ({len(images) / seconds:.1f} images/s). Results in {out_dir}")
    if skipped:
        print(f"skipped {len(skipped)} of {len(files)} files that could not be read (listed in predictions.json)")
    return predictions


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        predict(cfg)
    except (CheckpointError, ModelFileError, NoImagesError, UsageError, PreflightError) as error:
        print(f"predict.py: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
