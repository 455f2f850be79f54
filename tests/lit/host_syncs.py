"""A callback that counts the host synchronisations of each training step (logging included)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from frcnn.ops.probes import HostSyncCounter


class SyncsPerStep(pl.Callback):
    """`counts[i]`: host syncs from the start of training batch i to the start of batch i + 1
    (the step, its callbacks and the loggers); the last batch is left out. Each finished run's
    counts are appended to `SyncsPerStep.runs`."""

    runs: list[list[int]] = []

    def __init__(self) -> None:
        self.counter = HostSyncCounter()
        self.counts: list[int] = []
        self._start: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.counter.__enter__()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._start is not None:
            self.counts.append(self.counter.total - self._start)
        self._start = self.counter.total

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.counter.__exit__(None, None, None)
        SyncsPerStep.runs.append(self.counts)
