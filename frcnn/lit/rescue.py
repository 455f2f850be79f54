"""`RescueCheckpoint`: when a run fails after training has started, save its state first.

A crash in validation, in a checkpoint write (a full disk, a file where the checkpoints folder
should be) or anywhere else after the first step would otherwise lose every step since the last
checkpoint. The state is written with the same contents as Lightning's own checkpoints, to the
first folder that takes it, and the log says where in one line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

log = logging.getLogger("train")


class RescueCheckpoint(Callback):
    """On an exception after the first training step, save `last.ckpt` to the first writable
    folder of `dirpaths` (e.g. the checkpoints folder, then the run folder).

    No barrier is involved (only the failing process writes), so a failure on one DDP rank
    cannot hang here; ranks other than 0 write `last-rank{r}.ckpt`.
    """

    def __init__(self, dirpaths: list[str], filename: str = "last.ckpt") -> None:
        self.dirpaths = [Path(path).expanduser() for path in dirpaths]
        self.filename = filename

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.global_step == 0:
            return  # nothing trained yet: nothing to lose
        rank = trainer.global_rank
        filename = self.filename if rank == 0 else f"{Path(self.filename).stem}-rank{rank}{Path(self.filename).suffix}"
        stopped = f"run stopped at step {trainer.global_step} by {type(exception).__name__}"
        try:
            # What `trainer.save_checkpoint` writes, without its barrier across ranks.
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        except Exception as error:
            log.error("%s; its state could not be saved: %s", stopped, _one_line(error))
            return
        failures = []
        for folder in self.dirpaths:
            path = folder / filename
            try:
                trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
            except Exception as error:  # an unwritable folder, a full disk: try the next one
                failures.append(f"{folder}: {_one_line(error)}")
                continue
            log.error("%s: its state is saved in %s (resume: python train.py ckpt_path=%s)", stopped, path, path)
            return
        log.error("%s; its state could not be saved: %s", stopped, "; ".join(failures))


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
