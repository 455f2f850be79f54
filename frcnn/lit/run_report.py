"""What a training run says in the console and in ``train.log``: where it starts, what every
validation scored, and how it ended with the commands to run next."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from frcnn.lit.checkpointing import LastCheckpoint
from frcnn.modeling.faster_rcnn import LOSS_NAMES

log = logging.getLogger("train")
# The validation numbers first shown, in Detectron2's and MMDetection's order: `val/<key>` -> column.
COCO_COLUMNS = {
    "map": "AP", "map_50": "AP50", "map_75": "AP75",
    "map_small": "APs", "map_medium": "APm", "map_large": "APl", "mar_100": "AR100",
}  # fmt: skip


class RunReport(Callback):
    """Three messages through the ``train`` logger, on rank zero:

    - at fit start, one block: model, data (images per split), total batch and learning rate,
      precision, devices, run folder;
    - after every validation (not the sanity check), the COCO table and every other ``val/*``
      number logged (per-class AP aside);
    - at fit end, one summary: steps and time, steps skipped for a non-finite loss
      (``frcnn.lit.divergence``), training images/s, the last losses, the best
      checkpoint by ``monitor``, ``last.ckpt``, and the next commands with their paths.

    Args:
        run_dir: the run folder (``paths.output_dir``).
        monitor: the metric the best checkpoint is chosen by (``val/map``).
        seed: the run's seed (``seed``), named in the start block.
    """

    def __init__(self, run_dir: str, monitor: str = "val/map", seed: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.seed = seed
        self._train_start: float | None = None
        self._validation_s = 0.0
        self._validation_start: float | None = None
        self._images = 0
        self._first_step = 0

    # ------------------------------------------------------------------ start

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log.info("\n".join(start_block(trainer, pl_module, self.run_dir, self.seed)))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._train_start, self._validation_s, self._images = time.perf_counter(), 0.0, 0
        self._first_step = trainer.global_step  # a resumed run starts past 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._images += len(batch[0]) * trainer.world_size

    # ------------------------------------------------------------- validation

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._validation_start is not None and self._train_start is not None:
            self._validation_s += time.perf_counter() - self._validation_start
        if not trainer.sanity_checking and trainer.is_global_zero:
            log.info("\n".join(validation_table(trainer.callback_metrics, trainer.global_step)))

    # -------------------------------------------------------------------- end

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._train_start is None:  # stopped before the first step
            return
        train_s = max(time.perf_counter() - self._train_start - self._validation_s, 1e-9)
        steps = trainer.global_step - self._first_step
        since = f" (from step {self._first_step})" if self._first_step else ""
        skipped = getattr(getattr(pl_module, "nonfinite_steps", None), "total", 0)
        lines = [
            f"done: {steps} steps{since} in {_duration(time.perf_counter() - self._train_start)}, {_why_stopped(trainer)}; "
            f"{skipped} skipped for a non-finite loss; {self._images / train_s:.1f} images/s in training (validation aside)",
            "last losses: " + _losses(trainer.callback_metrics),
        ]
        best = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor == self.monitor), None)
        best_path = best.best_model_path if best is not None else ""
        if best_path:
            lines.append(f"best {self.monitor} {float(best.best_model_score):.4f}: {best_path}")
        last = next((cb.path for cb in trainer.callbacks if isinstance(cb, LastCheckpoint) and cb.path.is_file()), None)
        if last is not None:
            lines.append(f"last checkpoint: {last}")
        lines += next_commands(best_path or str(last or ""), trainer)
        log.info("\n".join(lines))


def start_block(trainer: pl.Trainer, pl_module: pl.LightningModule, run_dir: Path, seed: int | None = None) -> list[str]:
    """The lines that open a run (model, data, batch and lr, precision, devices, run folder)."""
    model = getattr(pl_module, "model", pl_module)
    num_params = sum(param.numel() for param in model.parameters())
    num_trainable = sum(param.numel() for param in model.parameters() if param.requires_grad)
    lines = [
        f"run:       {run_dir}" + (f" (seed {seed})" if seed is not None else ""),
        f"model:     {_model_name(model)}, {getattr(model, 'num_classes', '?')} classes (background included), "
        f"{num_params / 1e6:.1f} M parameters ({num_trainable / 1e6:.1f} M trainable)",
    ]
    datamodule = trainer.datamodule
    streams = datamodule.streams() if hasattr(datamodule, "streams") else {}
    for split, stream in streams.items():
        if getattr(stream, "train", False):
            lines.append(f"data:      {split}: {stream.plan.num_usable} images to train on of {stream.num_rows} ({stream.source.description})")
        else:
            lines.append(f"           {split}: {stream.num_rows} images to validate on ({stream.source.description})")
    batch_size = getattr(datamodule, "batch_size", None)
    if batch_size is not None:
        total = batch_size * trainer.world_size * trainer.accumulate_grad_batches
        lines.append(
            f"batch:     {total} images per step = {batch_size} per device x {trainer.world_size} devices "
            f"x {trainer.accumulate_grad_batches} accumulated"
        )
    if trainer.optimizers:
        group = trainer.optimizers[0].param_groups[0]
        peak = group.get("initial_lr", group["lr"])  # before the schedule's warm-up factor
        warmup = f", warm-up from {group['lr']:.3g}" if not math.isclose(group["lr"], peak) else ""
        lines.append(f"lr:        {peak:.4g} ({type(trainer.optimizers[0]).__name__}{warmup})")
    lines.append(f"precision: {trainer.precision}")
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    lines.append(f"devices:   {trainer.num_devices} {accelerator} x {trainer.num_nodes} node(s), strategy {type(trainer.strategy).__name__}")
    if trainer.ckpt_path:
        lines.append(f"resumes:   {trainer.ckpt_path}")
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            lines.append(f"watch:     tensorboard --logdir {logger.log_dir}")
    return lines


def validation_table(metrics: dict[str, Any], step: int) -> list[str]:
    """The COCO numbers in one row, then any other ``val/*`` number (per-class AP aside)."""
    names = [name for name in COCO_COLUMNS if f"val/{name}" in metrics]
    lines = [f"validation at step {step}:"]
    if names:
        lines.append("  " + " ".join(f"{COCO_COLUMNS[name]:>7}" for name in names))
        lines.append("  " + " ".join(f"{float(metrics[f'val/{name}']):>7.4f}" for name in names))
    others = sorted(
        key for key in metrics
        if key.startswith("val/") and key.removeprefix("val/") not in COCO_COLUMNS and not key.startswith("val/ap/")
    )  # fmt: skip
    lines += [f"  {key} = {float(metrics[key]):.4f}" for key in others]
    return lines


def next_commands(ckpt: str, trainer: pl.Trainer) -> list[str]:
    """What to run next, with this run's paths."""
    lines = ["next:"]
    if ckpt:
        lines += [f"  python evaluate.py ckpt={ckpt}", f"  python predict.py ckpt={ckpt} input=<image, folder or glob>"]
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            lines.append(f"  tensorboard --logdir {logger.log_dir}")
    return lines if len(lines) > 1 else []


def _model_name(model: Any) -> str:
    backbone = getattr(model, "backbone", None)
    body = getattr(backbone, "body", None)
    depth = getattr(body, "depth", None)
    stage = f" (ResNet-{depth} + FPN)" if depth else f" ({type(backbone).__name__})" if backbone is not None else ""
    return f"{type(model).__name__}{stage}"


def _why_stopped(trainer: pl.Trainer) -> str:
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return f"trainer.max_steps={trainer.max_steps} reached"
    if trainer.max_epochs is not None and trainer.max_epochs != -1 and trainer.current_epoch >= trainer.max_epochs:
        return f"trainer.max_epochs={trainer.max_epochs} reached"
    return "stopped early"


def _losses(metrics: dict[str, Any]) -> str:
    names = ["loss", *LOSS_NAMES]
    values = [f"{name} {float(metrics[f'train/{name}']):.4f}" for name in names if f"train/{name}" in metrics]
    return ", ".join(values) or "none logged"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
