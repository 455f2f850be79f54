"""The detector learns: a scaled-down `experiment=shapes_quick` reaches a real mAP on held-out images.

tests/modeling/test_overfit.py checks that the model alone, in a hand-written loop, can memorise
two images. This test runs the whole app as the demo does (data module with resizing and flips,
Lightning loop, AdamW + warm-up/cosine from the config, validation's COCO evaluator) from random
weights on a generated set and scores the validation split, which it never trains on. The
thresholds sit between what the intact detector reaches and what each of these breaks reaches
(measured with the break planted, numbers in docs/benchmarks.md, "Learning test"): the box coder's
dx/dy swapped, the RoI head left out of the optimizer, the box-regression losses dropped.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from train import train

STEPS = 250
# Measured on the 2-core dev box (`python benchmarks/learning_breaks.py`, 103–123 s a run):
# intact AP 0.407 / AP50 0.760; dx/dy swapped in BoxCoder.encode 0.219 / 0.511; RoI head frozen
# 0.120 / 0.396; box-regression losses zeroed 0.048 / 0.155.
MIN_AP = 0.3
MIN_AP50 = 0.6


def learning_overrides(tmp_path: Path) -> list[str]:
    """The test's run: `experiment=shapes_quick` on 256 train / 32 val images of 128–160 px, 250 steps."""
    return [
        "experiment=shapes_quick",
        f"data.path={tmp_path / 'shapes'}",
        "data.shapes.num_train=256",
        "data.shapes.num_val=32",
        "data.min_size=128",
        "data.max_size=160",
        f"trainer.max_steps={STEPS}",
        f"trainer.val_check_interval={STEPS}",
        "scheduler.warmup_steps=25",
        "trainer.num_sanity_val_steps=0",
        "callbacks.rich_progress_bar=null",
        "logger=csv",
    ]


def final_scores(run_dir: Path) -> tuple[float, float]:
    """AP and AP50 of the run's last validation, from its ``csv/metrics.csv``."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        scores = [row for row in csv.DictReader(file) if row.get("val/map")][-1]
    return float(scores["val/map"]), float(scores["val/map_50"])


@pytest.mark.slow
def test_a_short_shapes_run_learns(compose_train, tmp_path):
    train(compose_train(learning_overrides(tmp_path)))
    ap, ap50 = final_scores(tmp_path / "run")
    assert ap >= MIN_AP and ap50 >= MIN_AP50, (
        f"after {STEPS} steps AP {ap:.3f}, AP50 {ap50:.3f} (need {MIN_AP}, {MIN_AP50}): the detector learns too little"
    )
