"""frcnn.initialise: a model started from a trained detector (``model.weights``) holds every
tensor of the source and, by class name, its box-predictor rows; every refusal is one line.

The source is the session's ``tiny_checkpoint`` (a run on shapes: COCO's 80 names) with its box
predictor trained further on shapes pictures, so that its scores are peaked as a trained
model's are (an untrained one's near-uniform scores over 81 classes rank boxes differently
than over 4, whatever the rows). The data is
a COCO folder of shapes pictures whose categories are two COCO names in another order, spelled
otherwise and with other ids ("Kite" id 3, " TV" id 7), plus a new one ("unicorn", id 11). Its
boxes are the source's own best detections of those classes, so the source scores well on it
and a row copied to the wrong class would not.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn.checkpoint import CheckpointError, build_model, coco_layout, instantiate_model, load_checkpoint
from frcnn.convert import to_torchvision
from frcnn.data.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.sources.coco_folder import CocoFolder
from frcnn.data.sources.shapes import make_row
from frcnn.evaluation import COCOEvaluator
from frcnn.evaluation.inference import in_original_pixels, predict
from frcnn.initialise import initialise, initialise_from
from frcnn.modeling.config import r50_fpn_config

CATEGORIES = [{"id": 7, "name": " TV"}, {"id": 3, "name": "Kite"}, {"id": 11, "name": "unicorn"}]
FOLDER_CLASSES = ["background", "Kite", " TV", "unicorn"]  # labels: categories sorted by id
KITE, TV = COCO_CLASSES.index("kite") + 1, COCO_CLASSES.index("tv") + 1  # the source's labels
SOURCE_LABEL_TO_FOLDER = {KITE: 1, TV: 2}
PREDICTOR = "roi_heads.box_predictor."
CPU = torch.device("cpu")

REPO = Path(__file__).resolve().parents[1]


def _datamodule(folder: Path) -> DetectionDataModule:
    datamodule = DetectionDataModule(
        lambda: CocoFolder(folder), batch_size=2, num_workers=0, min_size=128, max_size=160, hflip_prob=0.0
    )
    datamodule.setup("validate")
    return datamodule


def _detections(model: torch.nn.Module, datamodule: DetectionDataModule):
    for _, targets, detections in predict(model, datamodule.val_dataloader(), CPU):
        yield from zip(in_original_pixels(detections, targets), [int(target["image_id"]) for target in targets])


def _many_detections(model_cfg: dict) -> dict:
    """The model config keeping every box (score 0, up to 1000 per image): all classes appear."""
    return {**model_cfg, "roi_heads": {**model_cfg["roi_heads"], "score_thresh": 0.0, "detections_per_img": 1000}}


def _ap_per_class(model: torch.nn.Module, datamodule: DetectionDataModule, to_folder: dict[int, int] | None = None) -> dict[str, float]:
    """COCO AP of each folder class; ``to_folder`` maps a source model's labels to the folder's (others dropped)."""
    evaluator = COCOEvaluator(datamodule.label_to_category_id, ground_truth=datamodule.val_ground_truth(), class_metrics=True)
    for detection, image_id in _detections(model, datamodule):
        if to_folder is not None:
            keep = torch.tensor([int(label) in to_folder for label in detection["labels"]], dtype=torch.bool)
            labels = torch.tensor([to_folder.get(int(label), 0) for label in detection["labels"]], dtype=torch.int64)
            detection = {"boxes": detection["boxes"][keep], "scores": detection["scores"][keep], "labels": labels[keep]}
        evaluator.update([detection], [image_id])
    metrics = evaluator.compute()
    return {FOLDER_CLASSES[label]: float(ap) for label, ap in zip(metrics["classes"].tolist(), metrics["map_per_class"])}


def _shapes_pictures(count: int) -> tuple[list[dict], list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The first ``count`` rows of the shapes val split, their images (uint8 [3, H, W]) and targets."""
    rows = [make_row(0, "val", index) for index in range(count)]
    images = [torch.from_numpy(np.array(Image.open(io.BytesIO(row["image"]["bytes"])))).permute(2, 0, 1) for row in rows]
    targets = [
        {"boxes": torch.tensor(row["objects"]["bbox"]).reshape(-1, 4), "labels": torch.tensor(row["objects"]["category"], dtype=torch.int64) + 1}
        for row in rows
    ]
    return rows, images, targets


def _calibrate_batch_norm(model: torch.nn.Module, images) -> None:
    """Batch-norm running statistics (``norm=bn``: a model trained without weights) measured on
    ``images``: a one-step run's are still near their initial values, which leave eval-mode
    features of a random backbone orders of magnitude too large for a class score to mean much."""
    norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches seen
    model.train()
    with torch.no_grad():
        model.backbone(model.transform(images)[0].tensor)
    model.eval()


def _train_predictor(model: torch.nn.Module, images, targets, steps: int = 200) -> None:
    """Train the box predictor alone on fixed box-head features of ``images`` (RoI losses, Adam):
    a source whose class scores mean something, in seconds; everything else stays as it is."""
    model.eval()
    heads = model.roi_heads
    with torch.no_grad():
        batch, gt = model.transform(images, targets)
        features = model.backbone(batch.tensor)
        proposals, _ = model.rpn(batch, features, model.anchor_generator(batch.tensor.shape[-2:], features))
        samples = heads.label_and_sample_proposals(proposals, gt)
        num_images, num_samples = samples.boxes.shape[:2]
        image_index = torch.arange(num_images, dtype=samples.boxes.dtype)[:, None, None].expand(-1, num_samples, 1)
        pooled = heads.box_head(heads.pooler(features[:4], torch.cat([image_index, samples.boxes], dim=2).flatten(0, 1)))
    optimizer = torch.optim.Adam(heads.box_predictor.parameters(), lr=1e-3)
    for _ in range(steps):
        logits, deltas = heads.box_predictor(pooled)
        losses = heads.losses(logits.unflatten(0, (num_images, num_samples)), deltas.unflatten(0, (num_images, num_samples)), samples)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()


@pytest.fixture(scope="module")
def source_path(tiny_checkpoint, tmp_path_factory) -> Path:
    """``tiny_checkpoint`` with its box predictor trained on 8 shapes pictures, as the app writes checkpoints."""
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    model = build_model(load_checkpoint(tiny_checkpoint))
    torch.manual_seed(0)
    _calibrate_batch_norm(model, _shapes_pictures(8)[1])
    _train_predictor(model, *_shapes_pictures(8)[1:])
    path = tmp_path_factory.mktemp("source") / "source.ckpt"
    state_dict = {f"model.{name}": tensor for name, tensor in model.state_dict().items()}
    torch.save({"state_dict": state_dict, "hyper_parameters": checkpoint["hyper_parameters"]}, path)
    return path


@pytest.fixture(scope="module")
def source(source_path):
    return load_checkpoint(source_path)


@pytest.fixture(scope="module")
def source_model(source):
    return build_model(source, _many_detections(source.cfg["model"]))


@pytest.fixture(scope="module")
def folder(tmp_path_factory, source_model) -> Path:
    """train/ and val/: 4 of the source's shapes pictures; boxes: its 2 best kites and TVs in each."""
    root = tmp_path_factory.mktemp("coco_folder")
    (root / "val" / "images").mkdir(parents=True)
    images = []
    for row in _shapes_pictures(4)[0]:
        Image.open(io.BytesIO(row["image"]["bytes"])).save(root / "val" / "images" / f"{row['image_id']}.png")
        images.append({"id": row["image_id"], "file_name": f"{row['image_id']}.png", "width": row["width"], "height": row["height"]})
    coco = {"images": images, "annotations": [], "categories": CATEGORIES}
    (root / "val" / "instances.json").write_text(json.dumps(coco))
    (root / "train").symlink_to(root / "val")
    folder_ids = {KITE: 3, TV: 7}
    for detection, image_id in _detections(source_model, _datamodule(root)):
        for label, category_id in folder_ids.items():
            best = detection["boxes"][detection["labels"] == label][:2]  # detections come best first
            for x1, y1, x2, y2 in best.tolist():
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": category_id,
                                            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})  # fmt: skip
    (root / "val" / "instances.json").write_text(json.dumps(coco))
    return root


def _target_model(source, num_classes: int = 4) -> torch.nn.Module:
    """The source run's model config (resolved: the predictor holds its own count) for ``num_classes``."""
    model_cfg = _many_detections({**source.cfg["model"], "num_classes": num_classes})
    model_cfg["roi_heads"]["box_predictor"] = {**model_cfg["roi_heads"]["box_predictor"], "num_classes": num_classes}
    return instantiate_model(model_cfg)


def _check_rows(model, found: dict[str, torch.Tensor], source_rows: dict[int, int], fresh_labels: list[int], fresh_model) -> None:
    """Label -> source row copied; ``fresh_labels`` equal a new model's rows; all else equal the source."""
    state = model.state_dict()
    for name, tensor in state.items():
        if not name.startswith(PREDICTOR):
            assert torch.equal(tensor, found[name]), name
    for layer, per_class in (("cls_score", 1), ("bbox_pred", 4)):
        for suffix in ("weight", "bias"):
            name = f"{PREDICTOR}{layer}.{suffix}"
            for label, row in source_rows.items():
                assert torch.equal(state[name][label * per_class : (label + 1) * per_class], found[name][row * per_class : (row + 1) * per_class]), (name, label)
            for label in fresh_labels:
                rows = slice(label * per_class, (label + 1) * per_class)
                assert torch.equal(state[name][rows], fresh_model.state_dict()[name][rows]), (name, label)


def test_rows_are_copied_by_name_and_the_source_ap_is_kept(source, source_model, folder, caplog):
    torch.manual_seed(1)
    fresh = _target_model(source)
    torch.manual_seed(1)
    model = _target_model(source)  # the same draws: its new rows are what a new predictor holds
    datamodule = _datamodule(folder)
    assert datamodule.class_names == FOLDER_CLASSES
    with caplog.at_level(logging.INFO, logger="frcnn.initialise"):
        table = initialise(model, str(source.source), datamodule.class_names)
    _check_rows(model, source.model_state_dict, {0: 0, 1: KITE, 2: TV}, [3], fresh)
    assert table.copied == [("background", "background"), ("Kite", "kite"), (" TV", "tv")] and table.new == ["unicorn"]
    assert "rows copied         3  background, Kite <- kite,  TV <- tv" in caplog.text
    assert "rows new            1  unicorn" in caplog.text

    source_ap = _ap_per_class(source_model, datamodule, SOURCE_LABEL_TO_FOLDER)
    model_ap = _ap_per_class(model, datamodule)
    assert min(source_ap["Kite"], source_ap[" TV"]) > 0.3  # the comparison means something
    for name in ("Kite", " TV"):
        assert model_ap[name] == pytest.approx(source_ap[name], abs=0.02), (name, source_ap, model_ap)


def test_torchvision_layout_rows_follow_category_ids(source, folder, tmp_path):
    """The source written as torchvision writes COCO: its names, 91 rows indexed by category id."""
    found = source.model_state_dict
    names91, _ = coco_layout(91)
    rows91 = torch.zeros(91, dtype=torch.int64)  # the ten unused ids get background's row
    rows91[torch.tensor(COCO_CATEGORY_IDS)] = torch.arange(1, 81)
    state = dict(found)
    for layer, per_class in (("cls_score", 1), ("bbox_pred", 4)):
        for suffix in ("weight", "bias"):
            name = f"{PREDICTOR}{layer}.{suffix}"
            state[name] = found[name].unflatten(0, (81, per_class))[rows91].flatten(0, 1)
    path = tmp_path / "fasterrcnn_coco.pth"
    torch.save(to_torchvision(state), path)
    assert (names91[38], names91[72]) == ("kite", "tv")

    model = _target_model(source)
    initialise(model, str(path), _datamodule(folder).class_names)
    _check_rows(model, found, {0: 0, 1: KITE, 2: TV}, [], None)


def test_torchvisions_own_state_dict_loads(tmp_path):
    """torchvision's R50-FPN (91 outputs by category id) as written by its builder."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    reference = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    path = tmp_path / "fasterrcnn_resnet50_fpn_coco.pth"
    torch.save(reference, path)
    model = instantiate_model(r50_fpn_config(4))
    table = initialise(model, str(path), ["background", "dog", "Person", "unicorn"])
    state = model.state_dict()
    dog, person = 18, 1  # COCO category ids
    assert torch.equal(state[f"{PREDICTOR}cls_score.weight"][1], reference["roi_heads.box_predictor.cls_score.weight"][dog])
    assert torch.equal(state[f"{PREDICTOR}bbox_pred.bias"][8:12], reference["roi_heads.box_predictor.bbox_pred.bias"][4:8])
    assert torch.equal(state["rpn.head.objectness_logits.weight"], reference["rpn.head.cls_logits.weight"])
    assert torch.equal(state["backbone.fpn.lateral_convs.2.weight"], reference["backbone.fpn.inner_blocks.2.0.weight"])
    assert table.copied[1:] == [("dog", "dog"), ("Person", "person")] and table.new == ["unicorn"]
    assert table.skipped == [
        ("*.num_batches_tracked", "53 batch-norm step counters this model's norm does not keep"),  # torchvision's untrained R50 has BatchNorm2d
        (f"{PREDICTOR}*", "rows of 78 source classes the data does not have"),
    ]
    assert person == 1 and len(table.loaded) == len(state) - 4


def test_reinit_starts_every_row_new(source):
    torch.manual_seed(2)
    fresh = _target_model(source)
    torch.manual_seed(2)
    model = _target_model(source)
    table = initialise_from(model, source, FOLDER_CLASSES, "reinit")
    _check_rows(model, source.model_state_dict, {}, [0, 1, 2, 3], fresh)
    assert table.copied == [] and table.new == FOLDER_CLASSES


def test_no_shared_name_is_one_line_and_runs(source, caplog):
    model = _target_model(source, 3)
    with caplog.at_level(logging.WARNING, logger="frcnn.initialise"):
        table = initialise_from(model, source, ["background", "unicorn", "dragon"])
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith("model.weights: no class of the data (unicorn, dragon) is a class of")
    assert table.new == ["unicorn", "dragon"]


# ------------------------------------------------------------------ architecture mismatches


def _small(**options) -> dict:
    return r50_fpn_config(4, fpn_channels=32, box_representation_size=64, **options)


@pytest.mark.parametrize(
    ("source_cfg", "message"),
    [
        (
            {**_small(), "backbone": {**_small()["backbone"], "depth": 101}},
            r"another architecture: backbone.body.layer3.6.conv1.weight is in the weights, not in this model; "
            r"the file is ResNet-101 \+ FPN: train with model=frcnn_r50_fpn model/backbone=resnet101_fpn model.backbone.out_channels=32",
        ),
        (
            r50_fpn_config(4, fpn_channels=64, box_representation_size=64),
            r"another architecture: backbone.fpn.lateral_convs.0.weight is \[64, 256, 1, 1\] there, \[32, 256, 1, 1\] here; "
            r"the file is ResNet-50 \+ FPN: train with model=frcnn_r50_fpn model/backbone=resnet50_fpn model.backbone.out_channels=64",
        ),
    ],
    ids=["r101_into_r50", "fpn_width"],
)
def test_another_architecture_is_one_line(tmp_path, source_cfg, message):
    path = tmp_path / "other.pt"
    torch.save(instantiate_model(source_cfg).state_dict(), path)
    with pytest.raises(CheckpointError, match=f"^model.weights={path} is {message}") as error:
        initialise(instantiate_model(_small()), str(path), FOLDER_CLASSES)
    assert "\n" not in str(error.value)


def test_mobilenet_file_into_a_resnet_config_is_one_line(tmp_path):
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    path = tmp_path / "fasterrcnn_mobilenet_v3_large_fpn.pth"
    torch.save(fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).state_dict(), path)
    with pytest.raises(CheckpointError, match="MobileNetV3-FPN file: model=frcnn_mobilenet_v3_large_fpn") as error:
        initialise(instantiate_model(r50_fpn_config(4)), str(path), FOLDER_CLASSES)
    assert "\n" not in str(error.value) and "another architecture: backbone." in str(error.value)


def test_unknown_weights_classes_is_one_line(source):
    with pytest.raises(CheckpointError, match=r"model.weights_classes='all': use one of by_name, reinit"):
        initialise_from(_target_model(source), source, FOLDER_CLASSES, "all")


# ------------------------------------------------------------------ a fine-tune run


@pytest.mark.slow
def test_finetune_run_logs_the_table_and_val_loss_and_its_checkpoint_evaluates(source_path, folder, tiny_overrides, compose_train, tmp_path, caplog):
    import csv
    import shutil
    import subprocess
    import sys

    from frcnn.detector import Detector
    from train import train

    weights = tmp_path / "weights" / "source.ckpt"
    weights.parent.mkdir()
    shutil.copy(source_path, weights)
    model_options = [option for option in tiny_overrides if option.startswith("model.")]
    overrides = ["experiment=finetune", f"data.path={folder}", f"model.weights={weights}", "logger=csv", "cpu_threads=1",
                 "data.min_size=128", "data.max_size=160", "data.num_workers=0", "trainer=cpu", "trainer.max_epochs=1",
                 "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1", *model_options]  # fmt: skip
    with caplog.at_level(logging.INFO):
        train(compose_train(overrides, "run"))
    assert f"model.weights: checkpoint of this app {weights}" in caplog.text
    assert "rows copied         3  background, Kite <- kite,  TV <- tv" in caplog.text

    with open(tmp_path / "run" / "csv" / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/loss")]
    assert len(rows) == 1
    terms = [float(rows[0][f"val/{name}"]) for name in ("rpn_cls", "rpn_box", "roi_cls", "roi_box")]
    assert float(rows[0]["val/loss"]) == pytest.approx(sum(terms), rel=1e-5) and all(value > 0 for value in terms)

    shutil.rmtree(weights.parent)  # a fine-tuned checkpoint never reads its starting weights again
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    detector = Detector.from_checkpoint(checkpoint, device="cpu")
    assert detector.class_names == FOLDER_CLASSES
    assert len(detector(next((folder / "val" / "images").iterdir()))) == 1
    result = subprocess.run([sys.executable, str(REPO / "evaluate.py"), f"ckpt={checkpoint}", f"hydra.run.dir={tmp_path / 'eval'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["num_images"] == 4
