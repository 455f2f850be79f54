"""Where this process stands among the training processes, decided in the main process."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def rank_and_world_size(trainer: Any = None) -> tuple[int, int]:
    """(global rank, world size): from a Lightning `trainer` when given, else from an initialised
    `torch.distributed` process group, else (0, 1). Never call this inside a DataLoader worker:
    a spawned worker sees no process group."""
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order (a collective: every rank must call it); [obj] alone."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
