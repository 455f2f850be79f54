"""`DetectionDataModule.val_ground_truth()`: the val split's stored annotations as COCO ground truth."""

import contextlib
import io

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.sources.hub import HubDataset
from frcnn.evaluation import COCOEvaluator
from hub_rows import hub_row, write_split


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
