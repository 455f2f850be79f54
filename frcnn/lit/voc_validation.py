"""VOC mAP in validation: `val/voc07_map` and `val/voc_map` next to the module's COCO numbers."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from frcnn.distributed import gather_objects
from frcnn.evaluation.ground_truth import restrict_to_images
from frcnn.evaluation.inference import in_original_pixels
from frcnn.evaluation.voc_metric import Boxes, VOCSummary, evaluate_voc, ground_truth_boxes


class VOCValidation(Callback):
    """Scores every validation pass by the VOC rules (`frcnn.evaluation.voc_metric`) against
    the data module's `val_ground_truth()` (difficult objects are its crowds) and logs
    `val/voc07_map`, `val/voc_map` and, with `module.per_class_ap`, `val/voc07_ap/<class>`:
    `monitor=val/voc07_map` can pick the best checkpoint.

    Uses the detections `validation_step` returns (the batch's pixels, mapped back to the stored
    image); every rank gathers all of them (`frcnn.distributed.gather_objects`) and scores the
    images the ranks evaluated together, each image once.
    """

    def __init__(self) -> None:
        self._image_ids: list[torch.Tensor] = []
        self._detections: list[dict[str, torch.Tensor]] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._image_ids, self._detections = [], []

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if outputs is None:  # a module whose validation_step returns no detections
            return
        _, targets = batch
        for detection, target in zip(in_original_pixels(outputs, targets), targets):
            self._image_ids.append(target["image_id"].reshape(()))
            self._detections.append({key: value.detach() for key, value in detection.items()})

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        per_rank = gather_objects(self._local_detections())
        image_ids, detections = _first_of_each_image(per_rank)
        ground_truth = restrict_to_images(datamodule.val_ground_truth(), image_ids.tolist())
        summary = evaluate_voc(
            detections, ground_truth_boxes(ground_truth, datamodule.label_to_category_id), datamodule.class_names[1:]
        )
        pl_module.log_dict({"val/voc07_map": summary.voc07_map, "val/voc_map": summary.voc_map}, sync_dist=True)
        if getattr(pl_module, "per_class_ap", False):
            pl_module.log_dict(_per_class(summary), sync_dist=True)
        self._image_ids, self._detections = [], []

    def _local_detections(self) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """(image ids (ndarray[I]), each image's detections as numpy) of this rank: one copy to the host."""
        if not self._image_ids:
            return np.zeros(0, dtype=np.int64), []
        on_host = [{key: value.cpu().numpy() for key, value in detection.items()} for detection in self._detections]
        return torch.stack(self._image_ids).cpu().numpy(), on_host


def _first_of_each_image(per_rank: list[tuple[np.ndarray, list[dict[str, np.ndarray]]]]) -> tuple[np.ndarray, Boxes]:
    """(the evaluated image ids, their detections as `Boxes`); an image seen twice counts once."""
    image_ids = np.concatenate([ids for ids, _ in per_rank])
    detections = [detection for _, rank_detections in per_rank for detection in rank_detections]
    unique_ids, first = np.unique(image_ids, return_index=True)
    kept = [detections[index] for index in np.sort(first)]
    counts = [len(detection["scores"]) for detection in kept]
    return unique_ids, Boxes(
        image_ids=np.repeat(image_ids[np.sort(first)], counts),
        labels=np.concatenate([d["labels"] for d in kept] or [np.zeros(0)]).astype(np.int64),
        boxes=np.concatenate([d["boxes"] for d in kept] or [np.zeros((0, 4))]).astype(np.float64).reshape(-1, 4),
        scores=np.concatenate([d["scores"] for d in kept] or [np.zeros(0)]).astype(np.float64),
    )


def _per_class(summary: VOCSummary) -> dict[str, float]:
    """`val/voc07_ap/<class>` of the classes with ground truth in the evaluated images."""
    return {f"val/voc07_ap/{name}": float(ap) for name, ap in zip(summary.class_names, summary.ap07) if ap >= 0}
