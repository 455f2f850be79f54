"""What is scored is what was trained on: on every bad-data split, the val loader's own targets,
mapped back to the stored image's pixels and given as detections, score AP 1.0 against the
ground truth the metric uses (a perfect model of the training targets is perfect on the metric)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch

from frcnn.data import row_checks as kinds
from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.schema import hub_features
from frcnn.data.sources.hub import HubDataset
from frcnn.evaluation import COCOEvaluator
from frcnn.evaluation.inference import in_original_pixels
from tests.data.hub_rows import hub_row, jpeg_bytes

BOX = (4.0, 6.0, 40.0, 30.0)


def _row(image_id: int, boxes=(BOX,), iscrowd=None, **changes) -> dict:
    row = hub_row(image_id, boxes=boxes, categories=[2] * len(boxes))
    row["objects"]["iscrowd"] = list(iscrowd or [0] * len(boxes))
    row["objects"]["area"] = [float(area) for area in row["objects"]["area"]]
    row.update(changes)
    return row


# kind -> the rows beside a good one, and the count the split must report for that kind.
SPLITS = {
    kinds.SIZE_RESCALED: ([_row(2, boxes=[(8.0, 12.0, 80.0, 60.0), (100.0, 20.0, 124.0, 90.0)], width=128, height=96)], 1),
    "partly_outside": ([_row(2, boxes=[(-6.0, 6.0, 40.0, 30.0), (50.0, 30.0, 70.0, 52.0)])], None),
    kinds.DEGENERATE_BOX: ([_row(2, boxes=[BOX, (5.0, 5.0, 5.0, 9.0), (30.0, 6.0, 20.0, 30.0)])], 2),
    kinds.BOX_OUTSIDE_IMAGE: ([_row(2, boxes=[BOX, (70.0, 6.0, 90.0, 30.0)])], 1),
    kinds.REPEATED_IMAGE: ([_row(2), _row(2, boxes=[(10.0, 10.0, 30.0, 30.0)])], 1),
    kinds.UNDECODABLE_IMAGE: ([_row(2, image={"bytes": jpeg_bytes(64, 48)[:300], "path": None})], 1),
    "crowd": ([_row(2, boxes=[BOX, (30.0, 20.0, 60.0, 44.0)], iscrowd=[0, 1])], None),
}


def _write(root: Path, rows: list[dict]) -> None:
    features = hub_features(coco_folder=True)
    features["objects"]["category"] = datasets.List(datasets.Value("int64"))
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        columns = {name: [row[name] for row in rows] for name in features}
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(root / split / "000.parquet"))


@pytest.mark.parametrize("kind", list(SPLITS))
def test_training_targets_as_detections_score_ap_one(kind, tmp_path):
    bad_rows, count = SPLITS[kind]
    _write(tmp_path, [_row(1, boxes=[BOX, (20.0, 10.0, 60.0, 44.0)]), *bad_rows])
    dm = DetectionDataModule(HubDataset, path=str(tmp_path), batch_size=2, num_workers=0, min_size=96, max_size=160)
    dm.setup("validate")
    evaluator = COCOEvaluator(dm.label_to_category_id, ground_truth=dm.val_ground_truth())
    with pytest.warns(UserWarning) if kind == kinds.UNDECODABLE_IMAGE else _no_warning():
        batches = list(dm.val_dataloader())
    for _, targets in batches:
        perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]
        evaluator.update(in_original_pixels(perfect, targets), [t["image_id"] for t in targets], [t["orig_size"] for t in targets])
    assert evaluator.compute()["map"].item() == pytest.approx(1.0)
    scored = evaluator.coco_ground_truth()
    assert [image["id"] for image in scored["images"]] == ([1] if kind == kinds.UNDECODABLE_IMAGE else [1, 2])
    if count is not None:
        assert dm.val_dataset.problem_counts()[kind] == count
        if kind in kinds.ROW_COUNT_KINDS:
            assert scored["info"]["repaired"][kind] == count  # the metric repaired what training did


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
