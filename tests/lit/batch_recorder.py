"""A callback that saves what the app trained on, for a reference loop to replay."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from frcnn.modeling.faster_rcnn import LOSS_NAMES


class BatchRecorder(pl.Callback):
    """Writes ``out_dir/initial.pt`` and ``out_dir/final.pt`` (the model's state dict before the
    first step and after the last) and, per optimizer step N, ``out_dir/step{N}.pt``: the batch
    as the module received it, the four losses and their sum, and the learning rate the step used."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self._batch: Any = None
        self._lr = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(copy.deepcopy(pl_module.model.state_dict()), self.out_dir / "initial.pt")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.save(pl_module.model.state_dict(), self.out_dir / "final.pt")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch = copy.deepcopy(batch)  # before the model sees it
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        losses = {name: float(trainer.callback_metrics[f"train/{name}"]) for name in LOSS_NAMES}
        losses["loss"] = float(outputs["loss"])
        record = {"images": self._batch[0], "targets": self._batch[1], "losses": losses, "lr": self._lr}
        torch.save(record, self.out_dir / f"step{trainer.global_step - 1}.pt")
