"""Checkpoints written before data sources were Hydra nodes (flat `data.source: hub | shapes |
coco_folder`) still evaluate: their data config is translated on load, and `data.path=` still
overrides it."""

from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from evaluate import merged_config
from frcnn.data.coco_classes import COCO_CLASSES
from frcnn.data.datamodule import build_source
from frcnn.data.legacy_config import current_data_config
from frcnn.data.sources.coco_folder import CocoFolder
from frcnn.data.sources.hub import HubDataset
from frcnn.data.sources.shapes import Shapes
from frcnn.checkpoint import CheckpointError, load_checkpoint
from hub_rows import hub_row, write_split
from test_coco_folder import write_coco_folder

CONF_DIR = str(Path(__file__).parents[2] / "conf")
LOADER = {"_target_": "frcnn.data.datamodule.DetectionDataModule", "train_split": "train", "val_split": "val",
          "batch_size": 2, "num_workers": 0, "resize": "keep_ratio", "min_size": 128, "max_size": 192,
          "read_retries": 3, "retry_interval_s": 0.5}  # fmt: skip


def _instantiate(data: dict):
    return hydra.utils.instantiate(current_data_config(data), _convert_="all")


def test_old_shapes_config_builds_the_shapes_source(tmp_path):
    shapes = {"num_train": 8, "num_val": 2, "seed": 3, "train_shards": 1, "val_shards": 1}
    dm = _instantiate({**LOADER, "source": "shapes", "path": str(tmp_path / "shapes"), "shapes": shapes})
    assert isinstance(dm.source, Shapes) and dm.source.path == tmp_path / "shapes" and dm.source.options == shapes
    assert dm.class_names == ["background", *COCO_CLASSES]


def test_old_hub_config_keeps_revision_and_retries(tmp_path):
    write_split(tmp_path, "val", [hub_row(1, boxes=[(1, 1, 9, 9)], categories=[4])], num_shards=1)
    dm = _instantiate({**LOADER, "source": "hub", "path": str(tmp_path), "revision": "v1"})
    assert isinstance(dm.source, HubDataset)
    assert (dm.source.path, dm.source.revision, dm.source.read_retries, dm.source.retry_interval_s) == (str(tmp_path), "v1", 3, 0.5)
    dm.setup("validate")
    assert dm.val_ground_truth()["annotations"][0]["category_id"] == 5  # airplane


def test_old_coco_folder_config_drops_the_retries_it_never_used(tmp_path):
    write_coco_folder(tmp_path)
    dm = _instantiate({**LOADER, "source": "coco_folder", "path": str(tmp_path)})
    assert isinstance(dm.source, CocoFolder) and dm.class_names == ["background", "airplane", "cat"]


def test_current_config_is_left_as_it_is():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["data=coco_folder", "data.path=/x"])
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert current_data_config(data) == data


def test_unknown_source_is_one_line():
    with pytest.raises(ValueError, match=r"^data.source='imagenet' in the checkpoint's config: expected one of hub, shapes, coco_folder$"):
        current_data_config({**LOADER, "source": "imagenet", "path": "x"})


def _checkpoint(path: Path, data: dict) -> Path:
    hyper_parameters = {"cfg": {"model": {}, "data": data}, "class_names": ["background", *COCO_CLASSES]}
    torch.save({"state_dict": {"model.roi_heads.w": torch.zeros(1)}, "hyper_parameters": hyper_parameters}, path)
    return path


def test_old_checkpoint_loads_and_its_path_can_be_overridden(tmp_path):
    old = {**LOADER, "source": "shapes", "path": str(tmp_path / "old"), "shapes": {"num_train": 8}}
    checkpoint = load_checkpoint(_checkpoint(tmp_path / "old.ckpt", old))
    assert checkpoint.cfg["data"]["source"] == {"_target_": "frcnn.data.sources.shapes.Shapes", "_partial_": True}
    overrides = [f"ckpt={tmp_path / 'old.ckpt'}", f"data.path={tmp_path / 'new'}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides)
    source = build_source(merged_config(cfg, checkpoint.cfg, overrides).data)
    assert isinstance(source, Shapes) and source.path == tmp_path / "new" and source.options == {"num_train": 8}
    with pytest.raises(CheckpointError, match=r"old2.ckpt: data.source='x' in the checkpoint's config"):
        load_checkpoint(_checkpoint(tmp_path / "old2.ckpt", {**old, "source": "x"}))
