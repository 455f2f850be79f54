"""Shared fixtures: the training config composed by Hydra, as lightning-hydra-template does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
STARTING_THREADS = torch.get_num_threads()  # torch's thread count when the session began


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' small shapes set is generated (once per session)."""
    return tmp_path_factory.mktemp("shapes")


@pytest.fixture(scope="session")
def tiny_overrides(shapes_dir: Path) -> list[str]:
    """A shapes run small enough for a 2-core CPU: 128 px images, fewer proposals, 2 steps,
    validation on 2 images."""
    return [
        "data=shapes",
        f"data.path={shapes_dir}",
        "data.shapes.num_train=32",
        "data.shapes.num_val=4",
        "data.min_size=128",
        "data.max_size=160",
        "data.val_limit=2",
        "data.num_workers=0",
        "trainer=cpu",
        "cpu_threads=1",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        "model.rpn.pre_nms_top_n_train=300",
        "model.rpn.post_nms_top_n_train=150",
        "model.rpn.pre_nms_top_n_test=150",
        "model.rpn.post_nms_top_n_test=50",
        "model.roi_heads.batch_size_per_image=64",
    ]


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, writing under ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.log_dir = str(output_dir)
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def compose_train(tmp_path: Path) -> Callable[..., DictConfig]:
    """``compose_train(overrides, name="run")``: a config writing to ``tmp_path / name``."""

    def _compose(overrides: list[str], name: str = "run") -> DictConfig:
        return compose_config(overrides, tmp_path / name)

    return _compose


@pytest.fixture(autouse=True)
def _delete_checkpoints(request: pytest.FixtureRequest):
    """A test's checkpoints (~330 MB each) are deleted when it ends: the suite would otherwise
    hold ~9 GB of them until pytest clears its folders at the end of the session."""
    tmp_path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    for path in tmp_path.rglob("*.ckpt") if tmp_path else ():
        path.unlink()


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """``train(cfg)`` with ``cpu_threads`` sets a process-wide value: every test starts and ends with
    the session's starting count, also after a session fixture's run (set up before this one) set
    its own."""
    torch.set_num_threads(STARTING_THREADS)
    yield
    torch.set_num_threads(STARTING_THREADS)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_overrides: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a one-step ``tiny_overrides`` run whose model keeps every box
    (``roi_heads.score_thresh=0``, 10 per image), so that an untrained model still detects."""
    from train import train

    out = tmp_path_factory.mktemp("tiny_run")
    overrides = [*tiny_overrides, "trainer.max_steps=1", "model.roi_heads.score_thresh=0.0", "model.roi_heads.detections_per_img=10"]
    train(compose_config(overrides, out))
    return out / "checkpoints" / "last.ckpt"
