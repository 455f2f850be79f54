"""The official COCO protocol end to end: the dataset's own annotations, areas, crowds and ids,
against pycocotools over the dataset's own files."""

import copy
import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn

from frcnn.data.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.sources.coco_folder import CocoFolder
from frcnn.data.sources.shapes import Shapes
from frcnn.evaluation import COCOEvaluator, evaluate_coco, load_ground_truth_json, write_json
from frcnn.lit import DetectionModule
from frcnn.lit.module import VAL_METRIC_NAMES
from coco_case import FOLDER_ANNOTATIONS, FOLDER_IMAGES, pycocotools_eval, planted_predictions, write_coco_folder

METRIC_INDEX = {"map": 0, "map_50": 1, "map_75": 2, "map_small": 3, "map_medium": 4, "map_large": 5, "mar_100": 8}


@pytest.fixture
def folder(tmp_path):
    write_coco_folder(tmp_path)
    return tmp_path


def folder_datamodule(folder, **kwargs) -> DetectionDataModule:
    return DetectionDataModule(**{"source": CocoFolder, "path": str(folder), "num_workers": 0, "batch_size": 2, "resize": "none", **kwargs})


def test_folder_scores_equal_pycocotools_over_its_own_instances_json(folder):
    dm = folder_datamodule(folder)
    evaluator = COCOEvaluator(dm.label_to_category_id, ground_truth=dm.val_ground_truth())
    preds, image_ids = planted_predictions(dm.label_to_category_id)
    evaluator.update(preds[:3], image_ids[:3])
    evaluator.update(preds[3:], image_ids[3:])
    write_json(evaluator.coco_results(), folder / "detections.json")
    oracle = pycocotools_eval(folder / "val" / "instances.json", folder / "detections.json")

    summary = evaluator.summary()
    assert ((oracle.stats > 0) & (oracle.stats < 1)).all(), oracle.stats  # every number exercised
    np.testing.assert_allclose(summary.stats, oracle.stats, atol=1e-6, rtol=0)
    detections = json.loads((folder / "detections.json").read_text())
    assert {d["category_id"] for d in detections} == {5, 17, 42, 60}  # the folder's own ids
    assert {d["image_id"] for d in detections} == set(FOLDER_IMAGES)

    # The case exercises what the old protocol got wrong: crowds dropped, box areas.
    ground_truth = evaluator.coco_ground_truth()
    no_crowds = copy.deepcopy(ground_truth)
    no_crowds["annotations"] = [a for a in no_crowds["annotations"] if not a["iscrowd"]]
    box_areas = copy.deepcopy(ground_truth)
    for annotation in box_areas["annotations"]:
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    assert evaluate_coco(no_crowds, detections).stats[0] < summary.stats[0] - 0.01
    assert np.abs(evaluate_coco(box_areas, detections).stats[3:6] - summary.stats[3:6]).max() > 0.1


def test_folder_ground_truth_is_the_file_untouched(folder):
    dm = folder_datamodule(folder)
    ground_truth = dm.val_ground_truth()
    assert dm.val_ground_truth() is ground_truth  # read once
    stored = json.loads((folder / "val" / "instances.json").read_text())
    assert sorted(ground_truth["images"], key=lambda i: i["id"]) == sorted(
        ({"id": i["id"], "width": i["width"], "height": i["height"]} for i in stored["images"]), key=lambda i: i["id"]
    )
    assert {"id": 1001, "width": 200, "height": 200} in ground_truth["images"]  # the empty image
    ours = sorted((a["image_id"], a["category_id"], a["bbox"], a["area"], a["iscrowd"]) for a in ground_truth["annotations"])
    assert ours == sorted((i, c, [float(v) for v in bbox], area, crowd) for i, c, bbox, area, crowd in FOLDER_ANNOTATIONS)
    assert sorted(c["id"] for c in ground_truth["categories"]) == [5, 17, 42, 60]
    assert all(a["id"] > 0 for a in ground_truth["annotations"])
    assert ground_truth["info"]["left_out"]["annotations"] == 0
    with_limit = folder_datamodule(folder, val_limit=2).val_ground_truth()
    assert [image["id"] for image in with_limit["images"]] == [7, 9]


def test_crowds_are_no_training_targets(folder):
    dm = folder_datamodule(folder, batch_size=1)  # an epoch of whole batches of 1: every trainable image
    dm.setup("fit")
    trained = {int(t["image_id"]): t for _, batch in dm.train_dataloader() for t in batch}
    # Image 42: three boxes and a crowd; image 9: three boxes and a crowd.
    assert len(trained[42]["boxes"]) == 3 and len(trained[9]["boxes"]) == 3
    torch.testing.assert_close(trained[9]["boxes"][1], torch.tensor([260.0, 160.0, 320.0, 220.0]))


class PlantedDetector(nn.Module):
    """Stands in for the detector in validation: returns ``preds`` in loader order."""

    def __init__(self, preds: list[dict]) -> None:
        super().__init__()
        self.preds = list(preds)
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, images):
        taken, self.preds = self.preds[: len(images)], self.preds[len(images) :]
        return taken


def test_validation_logs_the_official_numbers(folder):
    """Validation (DetectionModule + trainer.validate) and the metric API are one path."""
    dm = folder_datamodule(folder)
    # No ids given to the module (as an older checkpoint's identity map): the data module's win.
    module = DetectionModule({"model": {"_target_": "torch.nn.Identity"}}, dm.class_names, label_to_category_id=None)
    preds, _ = planted_predictions(dm.label_to_category_id)  # image-id order, the loader's
    module.model = PlantedDetector(preds)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, datamodule=dm)

    evaluator = COCOEvaluator(dm.label_to_category_id, ground_truth=dm.val_ground_truth())
    evaluator.update(*planted_predictions(dm.label_to_category_id))
    write_json(evaluator.coco_results(), folder / "detections.json")
    oracle = pycocotools_eval(folder / "val" / "instances.json", folder / "detections.json")
    logged = {name: trainer.callback_metrics[f"val/{name}"].item() for name in VAL_METRIC_NAMES}
    expected = oracle.stats[[METRIC_INDEX[name] for name in VAL_METRIC_NAMES]]
    np.testing.assert_allclose([logged[name] for name in VAL_METRIC_NAMES], expected, atol=1e-6, rtol=0)


def test_coco_ids_round_trip_from_torchvision(tmp_path):
    """torchvision's 91 outputs (index = COCO id) -> `convert --coco-to-80` labels -> COCO ids in
    detections.json, scored against a hand-built instances file with torchvision's names."""
    from torchvision.models._meta import _COCO_CATEGORIES
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    from frcnn.convert import from_torchvision

    torch.manual_seed(0)
    theirs = FastRCNNPredictor(16, 91)
    gaps = [c for c in range(1, 91) if c not in COCO_CATEGORY_IDS]
    with torch.no_grad():
        theirs.cls_score.bias[gaps] = -1e4  # no category behind these ids: never predicted, as trained
    ours = FastRCNNPredictor(16, 81)
    state = {f"roi_heads.box_predictor.{k}": v for k, v in theirs.state_dict().items()}
    converted = from_torchvision(state, coco_to_80=True)
    ours.load_state_dict({k.removeprefix("roi_heads.box_predictor."): v for k, v in converted.items()})
    features = torch.randn(200, 16)
    their_scores, their_deltas = theirs(features)
    our_scores, our_deltas = ours(features)
    their_ids = their_scores[:, 1:].argmax(1) + 1  # torchvision's labels are COCO ids
    our_labels = our_scores[:, 1:].argmax(1) + 1
    label_to_category_id = DetectionDataModule(Shapes, path=str(tmp_path / "unused")).label_to_category_id
    assert torch.equal(torch.tensor(label_to_category_id)[our_labels], their_ids)
    assert len(set(their_ids.tolist())) > 40
    torch.testing.assert_close(our_deltas.reshape(-1, 81, 4), their_deltas.reshape(-1, 91, 4)[:, [0, *COCO_CATEGORY_IDS]])
    assert [_COCO_CATEGORIES[c] for c in COCO_CATEGORY_IDS] == list(COCO_CLASSES)

    # One image per detection, the detection on its ground truth box.
    instances = {
        "images": [{"id": 100 + n, "width": 64, "height": 64} for n in range(len(their_ids))],
        "annotations": [
            {"id": n + 1, "image_id": 100 + n, "category_id": c, "bbox": [8, 8, 40, 40], "area": 1600, "iscrowd": 0}
            for n, c in enumerate(their_ids.tolist())
        ],
        "categories": [{"id": c, "name": _COCO_CATEGORIES[c]} for c in COCO_CATEGORY_IDS],
    }
    write_json(instances, tmp_path / "instances.json")
    evaluator = COCOEvaluator(label_to_category_id, ground_truth=load_ground_truth_json(tmp_path / "instances.json"))
    box = torch.tensor([[8.0, 8.0, 48.0, 48.0]])
    evaluator.update(
        [{"boxes": box, "scores": torch.ones(1), "labels": label.reshape(1)} for label in our_labels],
        [100 + n for n in range(len(our_labels))],
    )
    assert [d["category_id"] for d in evaluator.coco_results()] == their_ids.tolist()
    assert evaluator.summary().stats[0] == 1.0
