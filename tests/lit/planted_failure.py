"""A callback for the rescue tests: fails the first validation after training has started, or
(`in_sanity_check=true`) the sanity validation before the first step."""

from __future__ import annotations

import lightning.pytorch as pl


class FailValidation(pl.Callback):
    def __init__(self, in_sanity_check: bool = False) -> None:
        self.in_sanity_check = in_sanity_check

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking == self.in_sanity_check:
            raise RuntimeError(f"planted failure in validation at step {trainer.global_step}")
