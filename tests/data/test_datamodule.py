"""DetectionDataModule from the Hydra configs: shapes end to end, epochs via Lightning, exact resume."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.fabric.utilities.data import _set_sampler_epoch

from frcnn.data.sources.shapes import ensure_shapes, make_row

CONF_DIR = str(Path(__file__).parents[2] / "conf" / "data")
TINY_SHAPES = {"num_train": 24, "num_val": 6, "seed": 0, "train_shards": 4, "val_shards": 2}


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    return ensure_shapes(tmp_path_factory.mktemp("cache") / "shapes", **TINY_SHAPES)


def shapes_dm(shapes_dir: Path, **overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("shapes", overrides=[f"path={shapes_dir}", *(f"{key}={value}" for key, value in overrides.items())])
    cfg.shapes = TINY_SHAPES
    return instantiate(cfg)


@pytest.mark.parametrize("name", ["coco", "shapes", "coco_folder"])
def test_every_data_config_names_the_datamodule(name):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(name)
    assert cfg._target_ == "frcnn.data.datamodule.DetectionDataModule"


def test_shapes_generation_is_deterministic_and_learnable(shapes_dir):
    assert make_row(0, "train", 3) == make_row(0, "train", 3)
    rows = [make_row(0, "train", index) for index in range(40)]
    assert any(not row["objects"]["bbox"] for row in rows)
    assert len({(row["width"], row["height"]) for row in rows}) > 30
    sides = [min(x1 - x0, y1 - y0) for row in rows for x0, y0, x1, y1 in row["objects"]["bbox"]]
    assert min(sides) < 16 and max(sides) > 64
    assert ensure_shapes(shapes_dir, **TINY_SHAPES) == shapes_dir  # second call reuses the folder


def test_shapes_datamodule_yields_the_sample_contract(shapes_dir):
    dm = shapes_dm(shapes_dir, val_limit=4, num_workers=0)
    assert dm.num_classes == 81 and dm.class_names[0] == "background" and dm.class_names[80] == "toothbrush"
    assert dm.label_to_category_id[63] == 72  # tv: COCO id 72
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert len(images) == len(targets) == 2
    for image, target in zip(images, targets):
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        assert target["size"].tolist() == list(image.shape[-2:])
        assert min(image.shape[-2:]) == 192 or max(image.shape[-2:]) == 333
        assert target["labels"].min() >= 1 and target["labels"].max() <= 80
    val_ids = [int(t["image_id"]) for _, batch in dm.val_dataloader() for t in batch]
    assert val_ids == [1_000_001, 1_000_002, 1_000_003, 1_000_004]
    dm_workers = shapes_dm(shapes_dir, val_limit=4, num_workers=2)
    dm_workers.setup("validate")
    assert sorted(int(t["image_id"]) for _, batch in dm_workers.val_dataloader() for t in batch) == val_ids


def test_lightning_epoch_hook_reaches_the_stream(shapes_dir):
    dm = shapes_dm(shapes_dir, num_workers=0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    first = [int(t["image_id"]) for _, batch in loader for t in batch]
    _set_sampler_epoch(loader, 1)  # what Lightning's fit loop does at each epoch start
    assert dm.train_dataset.epoch == 1
    assert [int(t["image_id"]) for _, batch in loader for t in batch] != first


def batches(loader, count=None):
    out = []
    for images, targets in loader:
        out.append(([int(t["image_id"]) for t in targets], torch.cat([t["boxes"] for t in targets]), images))
        if count is not None and len(out) == count:
            break
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_datamodule_resumes_mid_epoch_exactly(shapes_dir, num_workers):
    def fresh():
        dm = shapes_dm(shapes_dir, num_workers=num_workers, shuffle_block=8, hflip_prob=0.5)
        dm.setup("fit")
        dm.set_epoch(1)
        return dm

    straight = batches(fresh().train_dataloader())
    loader = fresh().train_dataloader()
    head = batches(loader, count=3)
    state = loader.state_dict()
    resumed = fresh().train_dataloader()
    resumed.load_state_dict(state)
    tail = batches(resumed)
    assert [ids for ids, _, _ in head + tail] == [ids for ids, _, _ in straight]
    for (_, boxes, images), (_, expected_boxes, expected_images) in zip(head + tail, straight):
        torch.testing.assert_close(boxes, expected_boxes)
        assert all(torch.equal(a, b) for a, b in zip(images, expected_images))
