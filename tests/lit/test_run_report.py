"""What a run says: the start block, the table after every validation, the summary, and no
Lightning notice that is not about the run (a 5-step ``train.py`` in a subprocess)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from frcnn.lit.run_report import validation_table

ROOT = Path(__file__).resolve().parents[2]
# Console lines that are neither in train.log nor noise: the progress bars (rich, outside a terminal
# it prints each bar's last state) and Hydra's prefix of a log record.
PROGRESS_BAR = re.compile(r"^(Epoch \d+/\d+|Validation|Sanity Checking)\b.*(it/s|it/s\s+\S.*|\d+/\d+.*)$")
# Known noise, named so that a failure says which notice came back.
NOISE = ("GPU available", "TPU available", "💡", "litlogger", "Trainer already configured", "FLOPs",
         "weights_only", "Loading `train_dataloader`", "Seed set to", "`Trainer.fit` stopped")  # fmt: skip


def test_validation_table_shows_coco_numbers_and_every_other_val_metric():
    metrics = {
        "val/map": torch.tensor(0.25), "val/map_50": torch.tensor(0.5), "val/mar_100": torch.tensor(0.375),
        "val/voc07_map": torch.tensor(0.125), "val/loss": torch.tensor(1.5), "val/ap/cat": torch.tensor(0.1),
        "train/loss": torch.tensor(3.0),
    }  # fmt: skip
    lines = validation_table(metrics, step=7)
    assert lines[0] == "validation at step 7:"
    assert lines[1].split() == ["AP", "AP50", "AR100"] and lines[2].split() == ["0.2500", "0.5000", "0.3750"]
    assert lines[3:] == ["  val/loss = 1.5000", "  val/voc07_map = 0.1250"]  # per-class AP and train/* left out


@pytest.mark.slow
def test_five_step_run_tells_its_story_and_nothing_else(tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides, "trainer.max_steps=5", f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="0")
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    train_log = (run_dir / "train.log").read_text()

    # The story, in the console and in train.log.
    best = next((run_dir / "checkpoints").glob("best_step*.ckpt"))
    last = run_dir / "checkpoints" / "last.ckpt"
    story = [
        f"run:       {run_dir} (seed 42)", "model:     FasterRCNN (ResNet-50 + FPN), 81 classes",
        "train: ", "val: 2 images to validate on", "batch:     2 images per step", "lr:        0.0025 (SGD",
        "learning rate 0.0025 = optimizer.lr 0.02 x total batch 2 / optimizer.reference_batch 16",
        "precision: 32-true", "devices:   1 cpu", "validation at step 5:", "AP    AP50    AP75     APs     APm     APl   AR100",
        "data: no row skipped as bad at step 5", "done: 5 steps in ", "trainer.max_steps=5 reached; 0 skipped for a non-finite loss", "last losses: loss ",
        f"best val/map ", f": {best}", f"last checkpoint: {last}", f"python evaluate.py ckpt={best}",
        f"python predict.py ckpt={best} input=", f"tensorboard --logdir {run_dir / 'tensorboard'}",
    ]  # fmt: skip
    for text in story:
        assert text in console, f"console lacks {text!r}:\n{console}"
        assert text in train_log, f"train.log lacks {text!r}:\n{train_log}"

    # Nothing else: every console line is a line of train.log, a progress bar, or empty.
    logged = {line.strip() for line in train_log.splitlines()}
    others = [
        line for line in console.splitlines()
        if line.strip() and line.strip() not in logged and not PROGRESS_BAR.match(line.strip())
    ]  # fmt: skip
    assert not others, "console lines that are not the run's story:\n" + "\n".join(others)
    assert not [notice for notice in NOISE if notice in console]
