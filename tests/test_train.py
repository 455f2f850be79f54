"""The training app end to end on the shapes set: run, checkpoint, resume, sweep, DDP, errors."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from frcnn.lit import DetectionModule
from train import train

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ["train/rpn_cls", "train/rpn_box", "train/roi_cls", "train/roi_box", "train/loss"]


def _run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _csv_losses(run_dir: Path) -> dict[int, dict[str, float]]:
    """step -> the four losses and their sum, from the CSV logger's metrics.csv."""
    rows = {}
    with open(run_dir / "csv" / "metrics.csv") as file:
        for row in csv.DictReader(file):
            if row.get("train/loss"):
                rows[int(row["step"])] = {name: float(row[name]) for name in LOSSES}
    return rows


def test_fast_dev_run(compose_train, tiny_overrides):
    cfg = compose_train([*tiny_overrides, "debug=fast"])
    train(cfg)


def test_five_step_run_writes_checkpoint_and_events(compose_train, tiny_overrides, tmp_path, caplog):
    cfg = compose_train([*tiny_overrides, "trainer.max_steps=3"])
    with caplog.at_level("INFO", logger="train"):
        metric = train(cfg)
    assert isinstance(metric, float)
    # optimizer.lr is the rate for 16 images per step; this run takes 2.
    assert "learning rate 0.0025 = optimizer.lr 0.02 x total batch 2 / optimizer.reference_batch 16" in caplog.text
    assert "reached; 0 skipped for a non-finite loss;" in caplog.text  # the end-of-run line

    checkpoint_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 3
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.0025)
    hparams = checkpoint["hyper_parameters"]
    assert type(hparams["cfg"]) is dict and hparams["cfg"]["model"]["num_classes"] == 81
    assert hparams["class_names"][0] == "background"
    # No weights: train.py filled in torchvision's rule (every layer trains), so the checkpoint rebuilds without them.
    assert (hparams["cfg"]["model"]["backbone"]["norm"], hparams["cfg"]["model"]["backbone"]["trainable_layers"]) == ("bn", 5)
    assert checkpoint["DetectionDataModule"], "the data stream's position is saved"

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {*LOSSES, "train/lr", "val/map", "val/map_50", "val/mar_100"} <= scalars
    health = ["train/skipped_steps", "train/grad_norm", "train/rpn_positive_anchors", "train/roi_foreground_samples"]
    assert set(health) <= scalars
    assert [event.value for event in events.Scalars("train/skipped_steps")] == [0, 0, 0]
    assert all(event.value > 0 for name in health[1:] for event in events.Scalars(name)), "objects are sampled"
    assert [event.step for event in events.Scalars("train/loss")] == [0, 1, 2]
    assert len(events.Tags()["images"]) == 2, "validation images with boxes: data.val_limit=2"

    module = DetectionModule.from_checkpoint(checkpoint_path)
    for name, value in module.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][name]), name


@pytest.mark.slow
def test_resume_continues_the_same_run(compose_train, tiny_overrides, tmp_path):
    """3 steps, resume, 3 more steps == 6 steps straight: model, optimizer, scheduler, data
    position and random state all come back."""
    overrides = [
        *tiny_overrides,
        "logger=csv",
        "trainer.val_check_interval=3",
        "scheduler.warmup_steps=2",
        "optimizer.lr=0.01",
    ]
    train(compose_train([*overrides, "trainer.max_steps=6"], name="straight"))
    train(compose_train([*overrides, "trainer.max_steps=3"], name="first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(compose_train([*overrides, "trainer.max_steps=6", f"ckpt_path={last}"], name="resumed"))

    straight = _csv_losses(tmp_path / "straight")
    first, resumed = _csv_losses(tmp_path / "first"), _csv_losses(tmp_path / "resumed")
    assert sorted(first) == [0, 1, 2] and sorted(resumed) == [3, 4, 5]
    for step, losses in {**first, **resumed}.items():
        assert losses == pytest.approx(straight[step], rel=1e-4, abs=1e-6), f"step {step}"


def _cli_overrides(tiny_overrides: list[str]) -> list[str]:
    return [*tiny_overrides, "callbacks.rich_progress_bar=null"]


@pytest.mark.slow
def test_multirun_two_jobs_in_separate_folders(tiny_overrides, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = _run_cli(
        ["-m", "optimizer.lr=0.01,0.02", *_cli_overrides(tiny_overrides), f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").is_file()
        assert (sweep_dir / job / ".hydra" / "overrides.yaml").is_file()
    lrs = [torch.load(sweep_dir / job / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["cfg"]["optimizer"]["lr"] for job in "01"]
    assert lrs == [0.01, 0.02]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ckpt_path=/no/such/last.ckpt", "checkpoint not found: /no/such/last.ckpt"),
        ("trainer.accelerator=gpu", "MisconfigurationException"),
        ("optimizer.lr=fast", "ConfigError: optimizer frcnn.lit.optim.scaled_optimizer(lr='fast'"),
        ("model.backbone.out_channels=wide", "InstantiationException"),
        ("no_such_key=1", "Could not override 'no_such_key'"),
    ],
)
def test_user_errors_are_one_line(tiny_overrides, tmp_path, override, message):
    if override == "trainer.accelerator=gpu" and torch.cuda.is_available():
        pytest.skip("a CUDA machine accepts the request")
    result = _run_cli([*_cli_overrides(tiny_overrides), f"hydra.run.dir={tmp_path / 'run'}", override], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert message in output
    assert "Traceback" not in output


def test_resume_true_finds_last_checkpoint_of_the_run_folder(compose_train, tiny_overrides, tmp_path):
    from train import resume_checkpoint

    cfg = compose_train([*tiny_overrides, "resume=true"])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resume_checkpoint(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.touch()
    assert resume_checkpoint(cfg) == str(last)


def _diverge(tiny_overrides: list[str], run_dir: Path, *extra: str) -> str:
    """train.py at lr=inf: step 0 is finite and breaks the weights, steps 1 and 2 are skipped,
    module.max_nonfinite_steps=2 stops the run at step 2. Checks exit code 1, one line naming the
    steps and last.ckpt of step 1 (written before the first skip, and not since); returns that line."""
    overrides = [
        *_cli_overrides(tiny_overrides), f"hydra.run.dir={run_dir}", "optimizer.lr=inf", "module.max_nonfinite_steps=2",
        "trainer.max_steps=10", "callbacks.last_checkpoint.every_n_train_steps=1", *extra,
    ]  # fmt: skip
    result = _run_cli(overrides, cwd=run_dir.parent)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if "DivergenceError" in line]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert "2 steps in a row (steps 1-2; at step 2: rpn_cls=nan" in line and "learning rate inf" in line
    assert f"resume from the last checkpoint written before them, {last} (step 1;" in line
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 1
    return line


@pytest.mark.slow
def test_a_diverging_run_stops_in_one_line(tiny_overrides, tmp_path):
    """The validation inside the skipped stretch keeps no best checkpoint; train.log has the
    learning-rate line and the stop line."""
    run_dir = tmp_path / "run"
    line = _diverge(tiny_overrides, run_dir, "trainer.val_check_interval=2", "logger=csv")
    with open(run_dir / "csv" / "metrics.csv") as file:
        assert len([row for row in csv.DictReader(file) if row.get("val/map")]) == 1, "one validation, in the stretch"
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    train_log = (run_dir / "train.log").read_text()
    assert "learning rate inf = optimizer.lr inf x total batch 2 / optimizer.reference_batch 16" in train_log
    assert line.split(" - ", 1)[1] in train_log


@pytest.mark.slow
def test_a_diverging_ddp_run_stops_every_rank_in_one_line(tiny_overrides, tmp_path):
    """Two CPU ranks skip the same steps (Lightning refuses a skipped training_step under DDP: the
    backward runs and the gradients are dropped) and stop together, with one line between them."""
    _diverge(tiny_overrides, tmp_path / "run", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
