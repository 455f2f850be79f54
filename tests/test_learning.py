"""The detector learns: a short `experiment=shapes_quick` run fits its training images (COCO AP50).

tests/modeling/test_overfit.py checks that the model alone, in a hand-written loop, can memorise
two images. This test runs the whole app as the demo does (data module with resizing and flips,
Lightning loop, AdamW + warm-up/cosine from the config, validation's COCO evaluator) from random
weights for 100 steps on 32 shapes images and scores AP50 on those images, so it fails when any
part of learning breaks down entirely. (Unfinished: see MIN_AP50 for what it does not catch yet.)
"""

from __future__ import annotations

import pytest

from train import train

STEPS = 100
# Measured on the shared dev box (1 thread, 8.8 min under load): AP50 0.47. NOT yet a guard
# against subtle breaks: with the box coder's dx/dy swapped in encode it scored 0.40, with the RoI
# head left out of the optimizer 0.63. It catches only a detector that learns nothing.
MIN_AP50 = 0.3


@pytest.mark.slow
def test_a_short_shapes_run_learns(compose_train, tmp_path):
    overrides = [
        "experiment=shapes_quick",
        f"data.path={tmp_path / 'shapes'}",
        "data.shapes.num_train=32",
        "data.shapes.num_val=4",
        "data.val_split=train",  # scores the 32 training images
        "data.min_size=128",
        "data.max_size=192",
        f"trainer.max_steps={STEPS}",
        f"trainer.val_check_interval={STEPS}",
        "trainer.max_epochs=-1",  # 100 steps are 12.5 passes over the 32 images
        "scheduler.warmup_steps=20",
        "trainer.num_sanity_val_steps=0",
        "callbacks.rich_progress_bar=null",
        "logger=csv",
        "monitor=val/map_50",
    ]
    ap50 = train(compose_train(overrides))
    assert ap50 is not None and ap50 >= MIN_AP50, f"AP50 {ap50} after {STEPS} steps: the detector does not learn"
