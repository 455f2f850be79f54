"""Training callbacks specific to this app."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class FinalValidation(Callback):
    """Validate once more after the last step when ``max_steps`` ends the run.

    Lightning validates every ``val_check_interval`` batches; a run of ``max_steps`` that is
    not a multiple of it would end without a ``val/map`` and without a checkpoint. Asking the
    trainer to stop at the last step makes the loop run validation (and so
    ``ModelCheckpoint``) before it ends.
    """

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True
