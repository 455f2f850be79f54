"""Steps with a non-finite loss are counted; a run of them stops training on the spot."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch

from frcnn.lit.divergence import DivergenceError, NonFiniteSteps
from test_lit_module import NaNDetector, _module


def test_counts_and_stops_at_the_limit(caplog):
    steps = NonFiniteSteps(max_consecutive=3)
    losses = {"rpn_cls": math.nan, "roi_box": 0.5}
    steps.skip(4, losses, 0.02, "")
    steps.finite()  # a finite step ends the run of skips, not the count
    steps.skip(7, losses, 0.02, "/run/checkpoints/last.ckpt (step 6; python train.py ckpt_path=/run/checkpoints/last.ckpt)")
    steps.skip(8, losses, 0.02, "")
    assert (steps.total, steps.consecutive) == (3, 2)
    with pytest.raises(DivergenceError) as error:
        steps.skip(9, {"rpn_cls": math.inf, "roi_box": math.nan}, 0.0125, "")
    message = str(error.value)
    assert "\n" not in message
    assert "3 steps in a row (steps 7-9; at step 9: rpn_cls=inf, roi_box=nan; learning rate 0.0125)" in message
    assert "resume from the last checkpoint written before them, /run/checkpoints/last.ckpt (step 6;" in message
    assert "optimizer.lr" in message and "scheduler.warmup_steps" in message
    assert steps.total == 4
    with pytest.raises(ValueError, match="module.max_nonfinite_steps=0"):
        NonFiniteSteps(0)


def test_a_run_of_nonfinite_steps_stops_fit(compose_train, tiny_overrides):
    module = _module(compose_train, [*tiny_overrides, "module.max_nonfinite_steps=3"])
    module.model = NaNDetector(nan_calls=range(2, 100))  # finite first, then NaN
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    loader = torch.utils.data.DataLoader([([image], [target])] * 10, batch_size=None, collate_fn=lambda batch: batch)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, max_steps=10, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with pytest.raises(DivergenceError, match="3 steps in a row .steps 1-3;"):
        trainer.fit(module, train_dataloaders=loader)
    assert module.model.calls == 4, "stopped at the third skipped step"
    assert module.nonfinite_steps.total == 3
