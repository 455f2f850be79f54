"""A callback for the DDP test: each rank writes the image ids it trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class ImageIdRecorder(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"rank{trainer.global_rank}.txt", "a") as file:
            file.writelines(f"{int(target['image_id'])}\n" for target in batch[1])
