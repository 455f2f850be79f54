"""Random state that differs per rank, saved per rank and restored per rank."""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from frcnn.distributed import gather_objects


class RNGState(Callback):
    """Saves every rank's torch (and CUDA) generator state in checkpoints; each rank restores its own.

    The samplers of the RPN and RoI heads draw from torch's generators, so an exact resume needs
    them. Saving gathers from every rank (Lightning builds a checkpoint on every rank). They are
    restored just before the first resumed step, not on load: building the loaders' iterators
    after the load draws from the same generators, which an uninterrupted run did not do then.
    """

    def __init__(self) -> None:
        self._to_restore: list[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        local: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            local["cuda"] = torch.cuda.get_rng_state()
        return {"ranks": gather_objects(local)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict.get("ranks")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        states, self._to_restore = self._to_restore, None
        if not states:
            return
        if len(states) != trainer.world_size:
            warnings.warn(
                f"the checkpoint holds random states for {len(states)} rank(s), this run has {trainer.world_size}: "
                "random streams restart from the seed",
                stacklevel=1,
            )
            return
        state = states[trainer.global_rank]
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and pl_module.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], pl_module.device)
