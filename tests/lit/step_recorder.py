"""Callbacks for the multi-process tests: record what each rank trained on, or die or fail at a step."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class StepRecorder(pl.Callback):
    """Each rank appends `step loss image_id...` per training step to `out_dir/rank{R}.txt`."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
        ids = " ".join(str(int(target["image_id"])) for target in batch[1])
        with open(self.out_dir / f"rank{trainer.global_rank}.txt", "a") as file:
            file.write(f"{trainer.global_step} {loss:.8g} {ids}\n")


class KillAtStep(pl.Callback):
    """SIGKILL the whole process group (every rank) after optimizer step `step` — a node lost."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.killpg(os.getpgid(0), signal.SIGKILL)


def read_steps(out_dir: Path, rank: int) -> dict[int, tuple[float, list[int]]]:
    """step -> (loss, image ids) of one rank; a later line for the same step wins."""
    steps = {}
    for line in (Path(out_dir) / f"rank{rank}.txt").read_text().splitlines():
        step, loss, *ids = line.split()
        steps[int(step)] = (float(loss), [int(image_id) for image_id in ids])
    return steps


class FailAtStep(pl.Callback):
    """Raise `OSError: No space left on device` on one rank after optimizer step `step` — a disk
    that fills while the other ranks go on into the next step's collectives."""

    def __init__(self, step: int, rank: int) -> None:
        self.step, self.rank = step, rank

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            raise OSError(28, "No space left on device (planted)")
