"""Checkpoints that survive kills: atomic writes, and `last.ckpt` every N optimizer steps.
Neither `last.ckpt` nor the best checkpoint is written while steps are being skipped for a
non-finite loss (`frcnn.lit.divergence`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from frcnn.lit.divergence import skipping_nonfinite

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint to a temporary file beside it, flush it to disk, then rename it into
    place: a process killed mid-write leaves the previous checkpoint whole (rename is atomic on
    one filesystem). A failed write removes its file; one a kill cut short is removed by the
    next start of the run (`remove_partial_checkpoints`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)


PARTIAL_SUFFIX = ".partial"


def remove_partial_checkpoints(folder: Path) -> list[Path]:
    """Delete the `.<name>.<pid>.partial` files in `folder` that no live process on this host is
    still writing (left by a kill during a write); returns them."""
    removed = []
    for partial in folder.glob(f".*{PARTIAL_SUFFIX}") if folder.is_dir() else ():
        pid = partial.name[: -len(PARTIAL_SUFFIX)].rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LastCheckpoint(Callback):
    """`{dirpath}/last.ckpt` every `every_n_train_steps` optimizer steps, after every validation
    and at the end of training — what `resume=true` continues from.

    Runs on every rank (building a checkpoint gathers every rank's data position and random
    state); Lightning's strategy writes the file from rank 0.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 1000, filename: str = "last.ckpt") -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps must be >= 0 (0: only at validation and the end), got {every_n_train_steps}")
        self.path = Path(dirpath) / filename
        self.every_n_train_steps = every_n_train_steps
        self.saved_step: int | None = None  # the global step of the file at `path`, once written

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero and (removed := remove_partial_checkpoints(self.path.parent)):
            log.warning(
                "removed %d partial checkpoint file(s) an interrupted write left in %s", len(removed), self.path.parent
            )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_train_steps and step > 0 and step % self.every_n_train_steps == 0:
            self._save(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.fast_dev_run or self.saved_step == trainer.global_step or skipping_nonfinite(trainer.lightning_module):
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: resume continues from it
        self.saved_step = trainer.global_step


def describe_last_checkpoint(trainer: pl.Trainer) -> str:
    """`last.ckpt` (what a run resumes from): its path, its step and the command that resumes
    from it; "" when none was written."""
    callback = next((cb for cb in trainer.callbacks if isinstance(cb, LastCheckpoint) and cb.path.is_file()), None)
    if callback is None:
        return ""
    step = f"step {callback.saved_step}" if callback.saved_step is not None else "written before this run resumed"
    return f"{callback.path} ({step}; python train.py ckpt_path={callback.path})"


class BestCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint`, except that no checkpoint is taken while steps are being
    skipped for a non-finite loss: a validation of diverged weights never becomes the best."""

    def _should_skip_saving_checkpoint(self, trainer: pl.Trainer) -> bool:
        # The one check that every saving hook of ModelCheckpoint (validation end, epoch end,
        # every N steps) asks first.
        return super()._should_skip_saving_checkpoint(trainer) or skipping_nonfinite(trainer.lightning_module)
