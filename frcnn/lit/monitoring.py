"""What a run shows besides its losses: training speed and memory, training health, elapsed
time, and validation pictures."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from frcnn.evaluation.visualize import draw_detections


class TrainingSpeed(Callback):
    """`train/images_per_sec` (all ranks, over the whole interval between two batch ends: data
    loading included) and, on CUDA, `train/peak_mem_gib` at every step."""

    def __init__(self) -> None:
        self._last_batch_end: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_batch_end = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_batch_end is not None:
            num_images = len(batch[0]) * trainer.world_size
            pl_module.log("train/images_per_sec", num_images / (now - self._last_batch_end), on_step=True, batch_size=1)
        self._last_batch_end = now
        if pl_module.device.type == "cuda":
            peak_gib = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
            pl_module.log("train/peak_mem_gib", peak_gib, on_step=True, batch_size=1)


def logs_this_step(trainer: pl.Trainer) -> bool:
    """Whether the values logged in this training step reach the loggers (every
    ``trainer.log_every_n_steps``): the question Lightning's ``LearningRateMonitor`` asks too."""
    return trainer._logger_connector.should_update_logs


class TrainingHealth(Callback):
    """At the logging interval only (a logged tensor is read from the device when the loggers
    write it, so other steps pay no host synchronisation):

    - ``train/rpn_positive_anchors``, ``train/roi_foreground_samples``: objects among the
      sampled anchors and proposals per image (``model.training_stats``); near zero means
      the anchors or the proposals miss the objects.
    - ``train/grad_norm``: the total 2-norm of the gradients before clipping (after mixed
      precision unscales them); a climb precedes divergence.
    """

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        if not logs_this_step(trainer):
            return
        grads = [param.grad for group in optimizer.param_groups for param in group["params"] if param.grad is not None]
        if grads:  # a step with a non-finite loss logs its non-finite norm (then the module drops them)
            pl_module.log("train/grad_norm", torch.nn.utils.get_total_norm(grads), on_step=True, batch_size=1)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not logs_this_step(trainer):
            return
        for name, value in getattr(pl_module.model, "training_stats", {}).items():
            pl_module.log(f"train/{name}", value, on_step=True, batch_size=1)


class ElapsedTime(Callback):
    """`time/elapsed_min`: wall-clock minutes since the callback was built (before the data set is
    prepared and the model trained), at every step and with every validation's metrics, so a
    CSV or TensorBoard curve can be drawn against minutes rather than steps."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def _log(self, pl_module: pl.LightningModule) -> None:
        pl_module.log("time/elapsed_min", (time.perf_counter() - self._start) / 60, batch_size=1)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._log(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(pl_module)


class ValidationPictures(Callback):
    """The first `num_images` validation images of every validation (rank 0), with ground truth
    (green) and predictions above `score_thresh` (a colour per class), to TensorBoard as
    `val/images/<i>`. Uses the predictions `validation_step` returns."""

    def __init__(self, num_images: int = 4, score_thresh: float = 0.3) -> None:
        self.num_images, self.score_thresh = num_images, score_thresh
        self._num_drawn = 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._num_drawn = 0

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        writers = [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if trainer.sanity_checking or not trainer.is_global_zero or not writers or outputs is None:
            return
        images, targets = batch
        class_names = pl_module.hparams.get("class_names")
        for image, pred, target in list(zip(images, outputs, targets))[: self.num_images - self._num_drawn]:
            picture = draw_detections(
                image, pred["boxes"], pred["scores"], pred["labels"], target["boxes"], target["labels"],
                class_names=class_names, score_threshold=self.score_thresh,
            )  # fmt: skip
            for writer in writers:
                writer.add_image(f"val/images/{self._num_drawn}", picture, global_step=trainer.global_step)
            self._num_drawn += 1
