"""DetectionDataModule from the Hydra configs: shapes end to end, epochs via Lightning, exact resume,
and the val split's stored annotations as COCO ground truth (`val_ground_truth`)."""

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.fabric.utilities.data import _set_sampler_epoch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.sources.hub import HubDataset
from frcnn.data.sources.shapes import ensure_shapes
from frcnn.evaluation import COCOEvaluator
from hub_rows import hub_row, write_split

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


def test_a_resume_on_another_data_revision_warns_in_one_line(shapes_dir, caplog):
    dm = shapes_dm(shapes_dir, num_workers=0)
    dm.setup("fit")
    state = dm.state_dict()
    assert state["revisions"]["train"].startswith("local-")  # a fingerprint of the local files
    with caplog.at_level("WARNING", logger="frcnn.data.datamodule"):
        dm.load_state_dict({**state, "revisions": {**state["revisions"], "train": "0123abc"}})
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and "the checkpoint was trained on 0123abc" in record.getMessage()


def test_hub_split_area_ranges_follow_area(tmp_path):
    """Hub rows whose `area` differs from the box area: COCO's ranges follow `area`; the Hub's
    0-based categories become COCO's ids."""
    rows = [
        hub_row(1, width=300, height=300, boxes=[(10, 10, 210, 210)], categories=[0]),  # box large
        hub_row(2, width=300, height=300, boxes=[(20, 20, 30, 30)], categories=[79]),  # box small
        hub_row(3, width=300, height=300, boxes=[(50, 50, 100, 100)], categories=[11]),  # box medium
    ]
    for row, area in zip(rows, (500, 50000, 2500)):  # small, large, medium by area
        row["objects"]["area"] = [area]
    write_split(tmp_path, "val", rows, num_shards=2)
    dm = DetectionDataModule(HubDataset, path=str(tmp_path), num_workers=0)
    ground_truth = dm.val_ground_truth()
    assert [a["area"] for a in ground_truth["annotations"]] == [500, 50000, 2500]
    assert [a["category_id"] for a in ground_truth["annotations"]] == [1, 90, 13]  # person, toothbrush, stop sign
    assert [a["iscrowd"] for a in ground_truth["annotations"]] == [0, 0, 0]  # the Hub schema has none

    # Perfect detections of images 1 (small by area) and 3 (medium); image 2 (large by area) missed.
    found = [{"boxes": torch.tensor([box]), "scores": torch.tensor([0.9]), "labels": torch.tensor([label])}
             for box, label in (((10.0, 10.0, 210.0, 210.0), 1), ((50.0, 50.0, 100.0, 100.0), 12))]  # fmt: skip
    nothing = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    evaluator = COCOEvaluator(dm.label_to_category_id, ground_truth=ground_truth)
    evaluator.update([found[0], nothing, found[1]], [1, 2, 3])
    stats = evaluator.summary().stats
    assert (stats[3], stats[4], stats[5]) == (1.0, 1.0, 0.0)  # by box area it would be APs 0, APl 1
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools, the oracle
        coco_gt = COCO()
        coco_gt.dataset = evaluator.coco_ground_truth()
        coco_gt.createIndex()
        oracle = COCOeval(coco_gt, coco_gt.loadRes(evaluator.coco_results()), "bbox")
        oracle.evaluate(), oracle.accumulate(), oracle.summarize()
    np.testing.assert_allclose(stats, oracle.stats, atol=1e-6, rtol=0)


def test_a_list_of_min_sizes_draws_one_per_training_image_and_validates_at_the_last(shapes_dir):
    """Multi-scale training (Detectron2's 1x: 640..800): each training image's short side is one
    of the sizes, drawn from (seed, epoch, image_id), so the same epoch gives the same sizes again;
    validation resizes to the last size."""
    dm = shapes_dm(shapes_dir, min_size=[64, 80, 96], max_size=400, num_workers=0, hflip_prob=0.5)
    dm.setup("fit")

    def short_sides(epoch: int) -> list[int]:
        dm.set_epoch(epoch)
        return [min(image.shape[-2:]) for images, _ in dm.train_dataloader() for image in images]

    first = short_sides(0)
    assert set(first) == {64, 80, 96} and short_sides(0) == first
    assert {min(image.shape[-2:]) for images, _ in dm.val_dataloader() for image in images} == {96}
