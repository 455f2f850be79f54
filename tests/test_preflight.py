"""Config, folder and checkpoint mistakes stop `train.py` before the first step, in one line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import frcnn.preflight
from frcnn.preflight import (
    PreflightError,
    check_checkpoint_space,
    check_data,
    check_resume_checkpoint,
    check_writable_dir,
    checkpoint_bytes,
    resolve_num_classes,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = {"batch_size": 2, "num_workers": 0, "resize": "keep_ratio", "min_size": 800, "max_size": 1333, "square_size": 400}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, "data.batch_size=0: must be a whole number >= 1"),
        ({"batch_size": "two"}, "data.batch_size='two': must be a whole number >= 1"),
        ({"num_workers": -1}, "data.num_workers=-1: must be a whole number >= 0"),
        ({"min_size": 0}, "data.min_size=0: must be a whole number >= 1"),
        ({"max_size": 800}, "data.max_size=800 is not above data.min_size=800"),
        ({"min_size": [640, 0]}, "data.min_size=0: must be a whole number >= 1"),
        ({"min_size": []}, r"data.min_size=\[\]: must be a whole number >= 1"),
        ({"min_size": [640, 1400]}, r"data.max_size=1333 is not above data.min_size=\[640, 1400\]"),
        ({"resize": "square", "square_size": 0}, "data.square_size=0: must be a whole number >= 1"),
        ({"max_pixels": 0}, "data.max_pixels=0"),
        ({"max_skip_fraction": 2}, "data.max_skip_fraction=2: must be a fraction in 0..1"),
    ],
)
def test_data_keys(changes, message):
    with pytest.raises(PreflightError, match=message):
        check_data({**DATA, **changes})


def test_good_data_keys_pass():
    check_data(DATA)
    check_data({**DATA, "min_size": [640, 672, 704, 736, 768, 800]})
    check_data({**DATA, "resize": "square", "min_size": 0, "max_pixels": 10**8, "max_skip_fraction": 0.01})


def test_num_classes():
    assert resolve_num_classes(None, 81, "data.path=x") == 81
    assert resolve_num_classes(81, 81, "data.path=x") == 81
    with pytest.raises(PreflightError, match=r"model.num_classes=1 but data.path=x has 81 classes .*null"):
        resolve_num_classes(1, 81, "data.path=x")


def test_writable_dir(tmp_path):
    check_writable_dir(tmp_path / "a" / "b", "key")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(PreflightError, match=r"key=.*/file/sub cannot be written: .*/file is a file, not a folder: choose another key"):
        check_writable_dir(tmp_path / "file" / "sub", "key")


def _lightning_checkpoint(path: Path, state_dict: dict) -> Path:
    torch.save({"state_dict": {f"model.{k}": v for k, v in state_dict.items()}, "hyper_parameters": {"cfg": {"model": {}}}}, path)
    return path


def _frozen_stem_model() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.BatchNorm1d(512), torch.nn.Linear(512, 512))
    model[0].requires_grad_(False)
    return model


def test_checkpoint_bytes_is_what_a_checkpoint_takes(tmp_path):
    """Weights, buffers and SGD's momentum of the trainable weights, as Lightning saves them."""
    model = _frozen_stem_model()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    model(torch.randn(4, 256)).sum().backward()
    optimizer.step()
    torch.save({"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()]}, tmp_path / "x.ckpt")
    assert checkpoint_bytes(model) == pytest.approx((tmp_path / "x.ckpt").stat().st_size, rel=0.02)


def test_checkpoint_space(tmp_path, monkeypatch, caplog):
    model = _frozen_stem_model()
    size = checkpoint_bytes(model)
    cfg = {"callbacks": {"last_checkpoint": {"dirpath": str(tmp_path)}, "rich_progress_bar": None}}
    for free, warned in [(2 * size, True), (3 * size, False)]:
        monkeypatch.setattr(frcnn.preflight.shutil, "disk_usage", lambda path, free=free: _usage(free))
        caplog.clear()
        check_checkpoint_space(cfg, model)
        assert bool(caplog.records) == warned, free
    monkeypatch.setattr(frcnn.preflight.shutil, "disk_usage", lambda path: _usage(size // 2))
    key = "callbacks.last_checkpoint.dirpath"
    message = (
        f"{key}={tmp_path} has {size / 2**21:.1f} MiB free; a checkpoint of this model takes about "
        f"{size / 2**20:.1f} MiB: free some space or choose another {key}"
    )
    with pytest.raises(PreflightError, match=f"^{re.escape(message)}$"):
        check_checkpoint_space(cfg, model)


def _usage(free: int) -> shutil._ntuple_diskusage:
    return shutil._ntuple_diskusage(10 * free, 9 * free, free)


def test_resume_checkpoint_must_fit_the_model(tmp_path):
    model = torch.nn.Linear(4, 3)
    check_resume_checkpoint(_lightning_checkpoint(tmp_path / "same.ckpt", model.state_dict()), model)
    other = _lightning_checkpoint(tmp_path / "other.ckpt", torch.nn.Linear(4, 5).state_dict())
    with pytest.raises(PreflightError, match=r"another model or data config \(0 missing, 0 unexpected, 2 reshaped .*weight is \[5, 4\] there, \[3, 4\] here"):
        check_resume_checkpoint(other, model)
    torch.save(model.state_dict(), tmp_path / "foreign.pt")
    with pytest.raises(PreflightError, match="ckpt_path: .* is a state dict, but not of frcnn"):
        check_resume_checkpoint(tmp_path / "foreign.pt", model)
    ours = ("backbone.body.conv1.weight", "rpn.head.objectness_logits.weight", "roi_heads.box_predictor.cls_score.weight")
    torch.save({key: torch.zeros(1) for key in ours}, tmp_path / "bare.pt")
    with pytest.raises(PreflightError, match="bare.pt holds model weights only, not a training checkpoint"):
        check_resume_checkpoint(tmp_path / "bare.pt", model)


def _run_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _files(tmp_path: Path) -> None:
    """Files for the run cases: bytes of text, a torchvision state dict, a checkpoint of another
    model config, a file where a folder should be (the checkpoints folder of the run "run")."""
    (tmp_path / "random.ckpt").write_bytes(b"these bytes are not a checkpoint\n" * 40)
    torchvision_keys = ("backbone.body.conv1.weight", "backbone.fpn.inner_blocks.0.0.weight", "rpn.head.cls_logits.weight")
    torch.save({key: torch.zeros(1) for key in torchvision_keys}, tmp_path / "torchvision.pth")
    _lightning_checkpoint(tmp_path / "other.ckpt", {"backbone.body.conv1.weight": torch.zeros(64, 3, 3, 3)})
    (tmp_path / "afile").write_text("")
    (tmp_path / "run_with_file").mkdir()
    (tmp_path / "run_with_file" / "checkpoints").write_text("")


@pytest.mark.parametrize(
    ("override", "message", "run"),
    [
        ("data.batch_size=0", "data.batch_size=0: must be a whole number >= 1", "run"),
        ("model.num_classes=1", "model.num_classes=1 but data.path=", "run"),
        ("data.path={tmp}/afile/shapes", "data.path={tmp}/afile/shapes cannot be written (the data is generated there on first use)", "run"),
        ("trainer.max_steps=2", "callbacks.model_checkpoint.dirpath={tmp}/run_with_file/checkpoints cannot be written: {tmp}/run_with_file/checkpoints is a file, not a folder", "run_with_file"),
        ("ckpt_path={tmp}/random.ckpt", "ckpt_path: {tmp}/random.ckpt is truncated or not a PyTorch checkpoint", "run"),
        ("ckpt_path={tmp}/torchvision.pth", "ckpt_path={tmp}/torchvision.pth holds model weights only, not a training checkpoint (optimizer, step, data position): start a run from these weights with model.weights={tmp}/torchvision.pth", "run"),
        ("experiment=finetune", "model.weights is required: fine-tuning starts from a trained detector, pass model.weights=PATH", "run"),
        ("ckpt_path={tmp}/other.ckpt", "ckpt_path={tmp}/other.ckpt was trained with another model or data config", "run"),
        ("data.val_limit=-1", "data.val_limit=-1: must be a whole number >= 1 (the first N validation images; null for all)", "run"),
        ("trainer.val_check_interval=0", "trainer.val_check_interval=0: give a whole number of steps >= 1, a fraction", "run"),
    ],
)
def test_train_stops_before_the_first_step(compose_train, tiny_overrides, tmp_path, override, message, run):
    from train import train

    _files(tmp_path)
    cfg = compose_train([*tiny_overrides, override.format(tmp=tmp_path)], name=run)
    with pytest.raises(PreflightError, match=re.escape(message.format(tmp=tmp_path))):
        train(cfg)
    assert not (tmp_path / run / "tensorboard").exists(), "stopped before any step"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        # train.py's own check: PreflightError is a user error, reported in one line.
        ("data.batch_size=0", "PreflightError: data.batch_size=0: must be a whole number >= 1"),
        # Hydra's callback, before train.py's code runs.
        ("hydra.run.dir=/proc/x", "PreflightError: hydra.run.dir=/proc/x cannot be written: cannot create files in /proc"),
    ],
)
def test_train_py_stops_in_one_line(tiny_overrides, tmp_path, override, message):
    run_dir = [] if override.startswith("hydra.run.dir") else [f"hydra.run.dir={tmp_path / 'run'}"]
    result = _run_train([*tiny_overrides, *run_dir, override], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-2000:]
    assert message in output, output[-2000:]
    assert "Traceback" not in output and len([line for line in output.splitlines() if "Error" in line]) == 1


def test_frozen_layers_need_weights(compose_train, caplog):
    """The offline demo trains every layer and says nothing; frozen random layers warn in one line;
    the COCO recipes refuse to start without weights."""
    import hydra
    from omegaconf import open_dict

    from frcnn.preflight import check_frozen_layers, resolve_backbone_training

    def resolve(overrides: list[str]):
        """The backbone node as train.py completes it, and its warning (if any)."""
        cfg = compose_train(overrides)
        with open_dict(cfg):
            cfg.model.backbone.update(resolve_backbone_training(cfg.model, cfg.require_weights))
        caplog.clear()
        with caplog.at_level("WARNING", logger="train"):
            check_frozen_layers(cfg.model, hydra.utils.instantiate({**cfg.model.backbone, "weights": None}))
        return (cfg.model.backbone.norm, cfg.model.backbone.trainable_layers), caplog.text.splitlines()

    assert resolve(["data=shapes"]) == (("bn", 5), [])  # torchvision's rule without weights: all layers train
    (norm, layers), (line,) = resolve(["data=shapes", "model.backbone.trainable_layers=3"])
    assert (norm, layers) == ("bn", 3)
    # Stem: conv1 + bn1 (weight, bias) = 3; layer1: 3 blocks x 3 x (conv + bn weight, bias) + downsample 3 = 30.
    assert "model.backbone.trainable_layers=3 and model.backbone.norm=bn freeze 33 weight tensors and 0 batch norms" in line
    assert "model.backbone.weights is null" in line
    # With weights (not loaded here: the check reads the config), torchvision's fine-tuning default, silently.
    weights = ["model.backbone.weights=/weights/resnet50.pth"]
    assert resolve(weights) == (("frozen_bn", 3), [])

    for experiment in ("coco_26ep", "coco_1x"):
        with pytest.raises(PreflightError, match=r"model.backbone.weights and model.weights are null: set model.backbone.weights="):
            resolve([f"experiment={experiment}"])
        assert resolve([f"experiment={experiment}", *weights]) == (("frozen_bn", 3), [])
        assert resolve([f"experiment={experiment}", "++model.weights=/weights/detector.pt"]) == (("frozen_bn", 3), [])
