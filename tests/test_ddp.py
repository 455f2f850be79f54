"""Two CPU processes under DDP (gloo), as a user at scale runs them, scaled down: a parquet split of
unequal shards with empty and corrupt images, epochs that end on both ranks at the same step, a
validation split that leaves one rank without images, a kill -9 of every rank or an error on one,
and an exact resume."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "data"))
from hub_rows import hub_row, jpeg_bytes, write_split  # noqa: E402
from lit.step_recorder import read_steps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARD_SIZES = [3, 7, 4, 6, 5]  # 25 training rows in 5 shards of unequal sizes
EMPTY, CORRUPT = {4, 11, 19}, {8, 16}


def _rows() -> list[dict]:
    rows = []
    for image_id in range(1, sum(SHARD_SIZES) + 1):
        boxes = [] if image_id in EMPTY else [(10.0, 12.0, 60.0, 70.0), (70.0, 5.0, 120.0, 40.0)]
        image = b"\xff\xd8 truncated" if image_id in CORRUPT else jpeg_bytes(128, 96, seed=image_id)
        rows.append(hub_row(image_id, 128, 96, boxes=boxes, categories=[image_id % 3, 7][: len(boxes)], image=image))
    return rows


@pytest.fixture(scope="module")
def hub_copy(tmp_path_factory) -> Path:
    """A local copy in the Hub schema: train/ (5 unequal shards), val/ (one image: one rank gets none)."""
    root = tmp_path_factory.mktemp("hub")
    rows = _rows()
    shards, start = [], 0
    for size in SHARD_SIZES:
        shards.append(rows[start : start + size])
        start += size
    for index, shard in enumerate(shards):
        write_split(root / f"part{index}", "train", shard, 1)
        (root / f"part{index}" / "train" / "000.parquet").rename(root / f"train-{index:05d}.parquet")
    write_split(root, "val", [hub_row(1000, 128, 96, boxes=[(5.0, 5.0, 50.0, 50.0)], categories=[2])], 1)
    return root


def _ddp_run(hub_copy: Path, run_dir: Path, steps_dir: Path, *extra: str, timeout: float = 400) -> subprocess.CompletedProcess:
    """train.py on 2 CPU processes, configured like coco_1x (max_epochs and max_steps both set),
    in its own process group so that a kill can take every rank."""
    args = [
        "data=coco", f"data.path={hub_copy}", "data.num_workers=0", "data.batch_size=2",
        "data.min_size=96", "data.max_size=128", "data.max_skip_fraction=0.5",
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "cpu_threads=1",
        "trainer.max_epochs=3", "trainer.max_steps=7", "trainer.val_check_interval=1.0",
        "trainer.check_val_every_n_epoch=1", "trainer.log_every_n_steps=1",
        "callbacks.last_checkpoint.every_n_train_steps=2", "callbacks.rich_progress_bar=null",
        "logger=csv",
        "model.rpn.pre_nms_top_n_train=200", "model.rpn.post_nms_top_n_train=100",
        "model.rpn.pre_nms_top_n_test=100", "model.rpn.post_nms_top_n_test=50", "model.roi_heads.batch_size_per_image=32",
        f"hydra.run.dir={run_dir}",
        "+callbacks.record._target_=tests.lit.step_recorder.StepRecorder", f"+callbacks.record.out_dir={steps_dir}",
        *extra,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=timeout, start_new_session=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(hub_copy, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("straight")
    result = _ddp_run(hub_copy, base / "run", base / "steps")
    return base, result


@pytest.mark.slow
def test_ranks_take_equal_steps_across_epochs_and_validation_with_an_empty_rank(uninterrupted):
    """22 usable rows / (2 ranks x batch 2) -> 5 steps an epoch on each rank; 7 steps cross into
    the second epoch; validation ran at the end of epoch 1 with one image for the two ranks."""
    base, result = uninterrupted
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = read_steps(base / "steps", 0), read_steps(base / "steps", 1)
    assert sorted(rank0) == sorted(rank1) == list(range(1, 8))
    epoch0 = [image_id for step in range(1, 6) for rank in (rank0, rank1) for image_id in rank[step][1]]
    usable = set(range(1, 26)) - EMPTY
    assert set(epoch0) <= usable and not set(epoch0) & CORRUPT
    assert len(epoch0) == 20 and len(set(epoch0)) >= 20 - 2 * len(CORRUPT)  # a corrupt row's place: another of its reader's rows
    checkpoint = torch.load(base / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 7 and len(checkpoint["DetectionDataModule"]["train_loader"]["ranks"]) == 2
    output = result.stdout + result.stderr
    assert "data: rows skipped as bad" in output and "undecodable_image=2" in output
    assert "val/map" in (base / "run" / "csv" / "metrics.csv").read_text()


# How the run is stopped after step 5 -> the step of the last.ckpt it resumes from.
INTERRUPTIONS = {
    "kill -9 of every rank": (("+callbacks.kill._target_=tests.lit.step_recorder.KillAtStep", "+callbacks.kill.step=5"), 4),
    "kill -9 after the epoch-end checkpoint": (
        ("+callbacks.kill._target_=tests.lit.step_recorder.KillAtStep", "+callbacks.kill.step=6", "callbacks.last_checkpoint.every_n_train_steps=4"), 5
    ),
    "disk full on rank 0": (("+callbacks.fail._target_=tests.lit.step_recorder.FailAtStep", "+callbacks.fail.step=5", "+callbacks.fail.rank=0"), 4),
    "disk full on rank 1": (("+callbacks.fail._target_=tests.lit.step_recorder.FailAtStep", "+callbacks.fail.step=5", "+callbacks.fail.rank=1"), 4),
}


@pytest.mark.slow
@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
def test_interrupted_run_resumes_each_rank_exactly(hub_copy, uninterrupted, tmp_path, interruption):
    """Stopped after step 5 (the periodic last.ckpt is of step 4, mid-epoch) by a kill of every
    rank or an error on one rank (or killed after step 6, last.ckpt of the validation at the end
    of epoch 1, step 5) (which must end every rank at once, not leave the other waiting
    in a collective): the resumed run gives each rank the same images and losses for the
    following steps as the uninterrupted run."""
    base, straight = uninterrupted
    assert straight.returncode == 0, straight.stderr[-3000:]
    run_dir, steps_dir = tmp_path / "run", tmp_path / "steps"
    overrides, saved_step = INTERRUPTIONS[interruption]
    stopped = _ddp_run(hub_copy, run_dir, steps_dir, *overrides, timeout=200)
    output, last = stopped.stdout + stopped.stderr, run_dir / "checkpoints" / "last.ckpt"
    if interruption.startswith("kill"):
        assert stopped.returncode == -9, output[-3000:]
    else:
        assert stopped.returncode != 0
        assert (
            f"run stopped at step 5 by OSError on rank {interruption[-1]}; a multi-process run saves no state on "
            f"failure: resume from {last} (step 4; python train.py ckpt_path={last})"
        ) in output, output[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == saved_step
    resumed = _ddp_run(hub_copy, run_dir, steps_dir, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rank in (0, 1):
        expected, got = read_steps(base / "steps", rank), read_steps(steps_dir, rank)
        for step in range(saved_step + 1, 8):
            assert got[step][1] == expected[step][1], f"rank {rank} step {step} images"
            assert got[step][0] == pytest.approx(expected[step][0], rel=1e-4), f"rank {rank} step {step} loss"
    with open(run_dir / "csv" / "metrics.csv") as file:
        steps_logged = {int(row["step"]) for row in csv.DictReader(file) if row.get("train/loss")}
    assert steps_logged == set(range(7)), "the resumed run appends to the run's metrics.csv"
