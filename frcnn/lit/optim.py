"""The optimizer at the learning rate for the batch a run actually uses (the linear scaling rule).

``optimizer.lr`` is the rate for ``optimizer.reference_batch`` images per optimizer step;
a run of ``total_batch`` images per step (``data.batch_size`` × devices × nodes ×
``trainer.accumulate_grad_batches``) trains at ``lr × total_batch / reference_batch``
(Goyal et al., "Accurate, Large Minibatch SGD", 2017; torchvision's reference script asks
for it by hand, Detectron2's ``REFERENCE_WORLD_SIZE`` and MMDetection's ``auto_scale_lr``
apply it). Warm-up and milestones are not rescaled: see docs/training.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from lightning.pytorch.utilities import rank_zero_only
from torch.nn import Parameter
from torch.optim import Optimizer

log = logging.getLogger("train")


def scaled_lr(lr: float, total_batch: int, reference_batch: int, scale_lr: bool) -> tuple[float, str]:
    """The rate a run of ``total_batch`` images per step uses, and one line that says why."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"lr={lr!r} must be a positive number")
    if not scale_lr:
        return lr, f"learning rate {lr:g}: optimizer.lr as given (optimizer.scale_lr=false), total batch {total_batch}"
    if isinstance(reference_batch, bool) or not isinstance(reference_batch, int) or reference_batch < 1:
        raise ValueError(f"reference_batch={reference_batch!r} must be a whole number of images >= 1")
    rate = lr * total_batch / reference_batch
    return rate, (
        f"learning rate {rate:g} = optimizer.lr {lr:g} x total batch {total_batch} / optimizer.reference_batch "
        f"{reference_batch} (linear scaling rule; optimizer.scale_lr=false uses optimizer.lr as given)"
    )


def scaled_optimizer(
    params: Iterable[Parameter],
    *,
    algorithm: Callable[..., Optimizer],
    total_batch: int,
    lr: float,
    reference_batch: int = 16,
    scale_lr: bool = True,
) -> Optimizer:
    """``algorithm(params, lr=...)`` at the rate for ``total_batch`` images per step (see ``scaled_lr``),
    said in one line of the log.

    Args:
        algorithm: the optimizer class with its other options bound (``conf/optimizer/*.yaml``'s
            ``algorithm`` node, e.g. ``torch.optim.SGD`` with momentum and weight decay).
        total_batch: images per optimizer step over all devices, nodes and accumulated batches.
        lr: the rate for ``reference_batch`` images per step.
        scale_lr: False: ``lr`` is used as given, whatever the batch.
    """
    rate, rule = scaled_lr(lr, total_batch, reference_batch, scale_lr)
    if rank_zero_only.rank == 0:
        log.info(rule)
    return algorithm(params, lr=rate)
