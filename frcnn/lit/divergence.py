"""Steps skipped for a non-finite loss: counted, and a run of them stops training.

A NaN or infinite loss skips its step: its gradients are dropped before the optimizer step, so
nothing is updated (the backward still runs: DDP's all-reduce needs every rank). The decision
is agreed across ranks, so every rank counts the same. ``max_consecutive`` such steps in a row mean the run
has diverged: every rank raises ``DivergenceError`` at the same step, and ``train.py`` exits
with one line. While a run of skips lasts, no checkpoint is written
(``frcnn.lit.checkpointing``): the weights of a diverging run are never kept as the best,
nor as ``last.ckpt`` over the checkpoint written before the first skip.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger("train")


class DivergenceError(RuntimeError):
    """Too many consecutive non-finite losses; ``str(error)`` is one line that says what to try."""


class NonFiniteSteps:
    """Counts skipped steps: ``total`` over the run, ``consecutive`` in the current run of skips.

    Args:
        max_consecutive: this many skipped steps in a row raise ``DivergenceError``.
    """

    def __init__(self, max_consecutive: int) -> None:
        if isinstance(max_consecutive, bool) or not isinstance(max_consecutive, int) or max_consecutive < 1:
            raise ValueError(f"module.max_nonfinite_steps={max_consecutive!r} must be a whole number >= 1")
        self.max_consecutive = max_consecutive
        self.total = 0
        self.consecutive = 0
        self._first_step = 0
        self._checkpoint_before = ""

    def finite(self) -> None:
        """A step with a finite loss ends the run of skips."""
        self.consecutive = 0

    def skip(self, step: int, losses: Mapping[str, float], lr: float, checkpoint_before: str) -> None:
        """Count step ``step`` as skipped; raise ``DivergenceError`` at ``max_consecutive`` in a row.

        Args:
            losses: the step's losses by name; lr: its learning rate.
            checkpoint_before: the last checkpoint written, in words, "" if none (kept from the first skip of a run).
        """
        if self.consecutive == 0:
            self._first_step, self._checkpoint_before = step, checkpoint_before
        self.total += 1
        self.consecutive += 1
        values = ", ".join(f"{name}={value:.4g}" for name, value in losses.items())
        if self.consecutive < self.max_consecutive:
            if rank_zero_only.rank == 0:  # every rank skips the same step
                log.warning(
                    "non-finite loss at step %d (%s): step skipped (%d in a row of module.max_nonfinite_steps=%d)",
                    step, values, self.consecutive, self.max_consecutive,
                )  # fmt: skip
            return
        restart = (
            f"resume from the last checkpoint written before them, {self._checkpoint_before}"
            if self._checkpoint_before
            else "start again (no checkpoint was written before them)"
        )
        raise DivergenceError(
            f"training diverged: the loss was not finite for {self.consecutive} steps in a row (steps "
            f"{self._first_step}-{step}; at step {step}: {values}; learning rate {lr:.4g}); try a lower optimizer.lr, "
            f"a longer scheduler.warmup_steps or gradient clipping (trainer.gradient_clip_val), and {restart}"
        )


def skipping_nonfinite(pl_module: pl.LightningModule) -> bool:
    """Whether ``pl_module`` is in a run of steps skipped for a non-finite loss."""
    steps = getattr(pl_module, "nonfinite_steps", None)
    return isinstance(steps, NonFiniteSteps) and steps.consecutive > 0
