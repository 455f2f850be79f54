"""Inputs that used to end in a traceback or wrong advice now stop in one line that says what to do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.source import DataSourceError
from frcnn.data.sources.coco_folder import CocoFolder
from frcnn.data.sources.hub import HubDataset
from frcnn.checkpoint import CheckpointError, load_checkpoint
from frcnn.preflight import PreflightError, RunDirCheck
from tests.data.hub_rows import hub_row, write_split

ROOT = Path(__file__).resolve().parents[1]


def _datamodule(root: Path, num_workers: int) -> DetectionDataModule:
    return DetectionDataModule(HubDataset, path=str(root), batch_size=2, num_workers=num_workers, min_size=48, max_size=64)


@pytest.mark.parametrize(("saved", "now"), [(0, 1), (2, 0)])
def test_resume_with_another_num_workers(tmp_path, saved, now):
    rows = [hub_row(i, boxes=[(4.0, 6.0, 40.0, 30.0)], categories=[1]) for i in range(1, 9)]
    write_split(tmp_path, "train", rows, 1)
    write_split(tmp_path, "val", rows, 1)
    before = _datamodule(tmp_path, saved)
    before.setup("fit")
    loader = before.train_dataloader()
    batches = iter(loader)
    next(batches)
    state = before.state_dict()
    del batches
    after = _datamodule(tmp_path, now)
    after.setup("fit")
    after.load_state_dict(state)
    message = f"the checkpoint's data position is for data.num_workers={saved}, this run has {now}: resume with data.num_workers={saved}"
    with pytest.raises(DataSourceError, match=re.escape(message)):
        after.train_dataloader()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_instances_json_that_is_not_coco_names_the_file(tmp_path, content):
    (tmp_path / "val" / "images").mkdir(parents=True)
    (tmp_path / "val" / "instances.json").write_text(content)
    with pytest.raises(DataSourceError, match=re.escape(str(tmp_path / "val" / "instances.json") + " is not a")) as error:
        CocoFolder(tmp_path).open("val")
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_train_py_with_a_broken_instances_json_is_one_line(tiny_overrides, tmp_path):
    """Through Hydra's instantiate: the data module's own line, not Hydra's wrapper."""
    (tmp_path / "data" / "train" / "images").mkdir(parents=True)
    (tmp_path / "data" / "train" / "instances.json").write_text("{not json")
    overrides = [o for o in tiny_overrides if not o.startswith(("data=", "data.path=", "data.shapes."))]
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides, "data=coco_folder", f"data.path={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="0"),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output[-2000:]
    assert f"DataSourceError: {tmp_path / 'data' / 'train' / 'instances.json'} is not a JSON file" in output, output[-2000:]


def test_ckpt_a_directory_says_so(tmp_path):
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path} is a directory, not a checkpoint file: give its file")):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"limit": -1}, "limit=-1: must be a whole number >= 1"),
        ({"batch_size": 0}, "batch_size=0: must be a whole number >= 1"),
    ],
)
def test_evaluate_refuses_impossible_counts(overrides, message):
    from evaluate import evaluate

    with pytest.raises(PreflightError, match=re.escape(message)):
        evaluate(OmegaConf.create({"limit": None, "batch_size": None, "ckpt": "unused", **overrides}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, "batch_size=0: must be a whole number >= 1"),
        ({"score_thresh": 2}, "score_thresh=2: scores are in 0..1, give a threshold in 0..1"),
        ({"score_thresh": -0.1}, "score_thresh=-0.1: scores are in 0..1"),
    ],
)
def test_predict_refuses_impossible_settings(overrides, message):
    from predict import UsageError, _check

    cfg = OmegaConf.create({"input": "x.jpg", "device": "cpu", "picture_format": "jpg", "batch_size": 4, "num_workers": 0, "score_thresh": 0.3, **overrides})
    with pytest.raises((PreflightError, UsageError), match=re.escape(message)):
        _check(cfg)


def test_predict_unwritable_output_names_output(capsys):
    cfg = OmegaConf.create({"output": "/proc/x", "hydra": {"run": {"dir": "${output}"}}})
    with pytest.raises(SystemExit):
        RunDirCheck._check(cfg, cfg.hydra.run.dir, "hydra.run.dir")
    assert "PreflightError: output=/proc/x cannot be written" in capsys.readouterr().err
