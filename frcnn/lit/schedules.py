"""Per-step learning-rate schedules: linear warm-up, then multistep or cosine decay.

Each factory takes the optimizer and the run length (``steps_per_epoch``, ``total_steps``,
given by :class:`frcnn.lit.module.DetectionModule`) and returns a ``LambdaLR`` stepped once
per optimizer step. The multipliers are small callable classes, so ``LambdaLR.state_dict``
stores their fields as plain data and a resumed run continues the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _warmup(step: int, warmup_steps: int, warmup_factor: float) -> float:
    """Linear ramp from ``warmup_factor`` at step 0 to 1 at ``warmup_steps`` (Detectron2's)."""
    if step >= warmup_steps:
        return 1.0
    alpha = step / warmup_steps
    return warmup_factor * (1 - alpha) + alpha


class WarmupMultiStepFactor:
    """lr multiplier: warm-up, then ``gamma ** (number of milestones passed)``."""

    def __init__(self, warmup_steps: int, warmup_factor: float, milestone_steps: Sequence[int], gamma: float):
        self.warmup_steps = warmup_steps
        self.warmup_factor = warmup_factor
        self.milestone_steps = sorted(int(step) for step in milestone_steps)
        self.gamma = gamma

    def __call__(self, step: int) -> float:
        passed = sum(step >= milestone for milestone in self.milestone_steps)
        return _warmup(step, self.warmup_steps, self.warmup_factor) * self.gamma**passed


class WarmupCosineFactor:
    """lr multiplier: warm-up, then half a cosine from 1 to ``min_factor`` at ``total_steps``."""

    def __init__(self, warmup_steps: int, warmup_factor: float, total_steps: int, min_factor: float):
        self.warmup_steps = warmup_steps
        self.warmup_factor = warmup_factor
        self.total_steps = total_steps
        self.min_factor = min_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps, self.warmup_factor)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_multistep(
    optimizer: Optimizer,
    *,
    steps_per_epoch: int | None,
    total_steps: int | None,
    warmup_steps: int = 500,
    warmup_factor: float = 0.001,
    milestones: Sequence[float] = (8, 11),
    gamma: float = 0.1,
) -> LambdaLR:
    """Linear warm-up over ``warmup_steps``, then x ``gamma`` at each milestone (in epochs).

    ``total_steps`` is not needed here; every schedule receives the run length.
    """
    if steps_per_epoch is None:
        raise ValueError(
            "scheduler milestones are in epochs but the number of steps per epoch is unknown "
            "(a stream without a length): set scheduler.steps_per_epoch, or trainer.max_steps and trainer.max_epochs"
        )
    milestone_steps = [round(epoch * steps_per_epoch) for epoch in milestones]
    return LambdaLR(optimizer, WarmupMultiStepFactor(warmup_steps, warmup_factor, milestone_steps, gamma))


def warmup_cosine(
    optimizer: Optimizer,
    *,
    steps_per_epoch: int | None,
    total_steps: int | None,
    warmup_steps: int = 500,
    warmup_factor: float = 0.001,
    min_factor: float = 0.0,
) -> LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_factor`` at ``total_steps``.

    ``steps_per_epoch`` is not needed here; every schedule receives the run length.
    """
    if total_steps is None:
        raise ValueError("scheduler=cosine needs a finite run: set trainer.max_steps")
    return LambdaLR(optimizer, WarmupCosineFactor(warmup_steps, warmup_factor, total_steps, min_factor))
