"""`train.py data=voc` for a few steps and `evaluate.py` on its checkpoint, on a written devkit:
VOC mAP logged in validation (and monitored), the VOC table, metrics.json and the devkit's
results files, whose AP by the devkit's own loop is what metrics.json says."""

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from evaluate import evaluate
from frcnn.data.sources.voc import VOC_CLASSES
from tests.data.voc_devkit import write_devkit
from tests.evaluation.voc_devkit_loop import devkit_aps_from_files
from train import train

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "model.rpn.pre_nms_top_n_train=300", "model.rpn.post_nms_top_n_train=150", "model.rpn.pre_nms_top_n_test=150",
    "model.rpn.post_nms_top_n_test=50", "model.roi_heads.batch_size_per_image=64",
    # An untrained model still detects, and every class keeps boxes: 50 proposals x 20 classes fit in 1000.
    "model.roi_heads.score_thresh=0.0", "model.roi_heads.detections_per_img=1000",
]  # fmt: skip


def test_voc_experiment_is_the_seed_recipe(compose_train):
    cfg = compose_train(["experiment=voc"])
    assert cfg.data.source._target_ == "frcnn.data.sources.voc.VOCDevkit" and cfg.monitor == "val/voc07_map"
    assert (cfg.data.min_size, cfg.data.max_size, cfg.data.hflip_prob, cfg.data.batch_size) == (600, 1000, 0.5, 1)
    assert [list(pair) for pair in cfg.data.train_sets] == [[2007, "trainval"], [2012, "trainval"]]
    assert (cfg.optimizer.lr, cfg.optimizer.reference_batch, cfg.optimizer.algorithm.momentum) == (0.001, 1, 0.9)
    assert cfg.optimizer.algorithm.weight_decay == 5e-4
    assert (list(cfg.scheduler.milestones), cfg.scheduler.warmup_steps, cfg.trainer.max_epochs) == ([14], 0, 20)
    assert cfg.callbacks.voc_metric._target_ == "frcnn.lit.voc_validation.VOCValidation"


def _evaluate(overrides: list[str], run_dir: Path) -> None:
    """`python evaluate.py OVERRIDES hydra.run.dir=RUN_DIR`, in this process (the imports are paid
    for already; tests/evaluation/test_evaluate.py runs the command itself)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("evaluate", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir, cfg.hydra.runtime.cwd = str(run_dir), str(ROOT)
    HydraConfig.instance().set_config(cfg)
    try:
        evaluate(cfg)
    finally:
        HydraConfig.instance().cfg = None  # as outside a Hydra app, for the tests that follow


@pytest.mark.slow
def test_train_and_evaluate_on_a_devkit(compose_train, tmp_path, capsys):
    devkit = write_devkit(tmp_path)
    overrides = [
        "data=voc", f"data.path={devkit}", "data.min_size=64", "data.max_size=96", "data.batch_size=2",
        "data.num_workers=0", "trainer=cpu", "cpu_threads=1", "trainer.max_steps=2", "logger=csv",
        "monitor=val/voc07_map", "module.per_class_ap=true", "data.max_skip_fraction=1.0", *SMALL,  # the devkit has every bad case
    ]  # fmt: skip
    cfg = compose_train(overrides)
    monitored = train(cfg)
    run_dir = tmp_path / "run"
    with open(run_dir / "csv" / "metrics.csv") as file:
        logged = [row for row in csv.DictReader(file) if row.get("val/voc07_map")][-1]
    assert monitored == pytest.approx(float(logged["val/voc07_map"]))
    assert float(logged["val/voc_map"]) >= 0 and logged["val/map"]  # next to the COCO numbers
    assert {"val/voc07_ap/dog"} <= set(key for key, value in logged.items() if value)  # dog: the only class with ground truth
    assert list((run_dir / "checkpoints").glob("best_step*.ckpt")), "monitor=val/voc07_map picks a checkpoint"

    eval_dir = tmp_path / "eval"
    _evaluate([f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", "batch_size=2"], eval_dir)
    printed = capsys.readouterr().out
    assert "VOC07 (11-point)  VOC2010+ (area)" in printed and " dog " in printed
    assert "(19 of 20 classes have no ground truth here)" in printed  # the difficult person does not count
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["voc07_map"] == pytest.approx(float(logged["val/voc07_map"]), abs=1e-6)  # the same model, images, metric
    assert metrics["voc07_ap_per_class"]["person"] == -1.0 and len(metrics["voc07_ap_per_class"]) == 20

    results = eval_dir / "results" / "VOC2007" / "Main"
    assert sorted(path.name for path in results.iterdir()) == sorted(f"comp4_det_test_{name}.txt" for name in VOC_CLASSES)
    first = (results / "comp4_det_test_dog.txt").read_text().splitlines()[0].split()
    assert first[0] in ("000010", "000011") and len(first) == 6
    scored = _without_boxes_outside(devkit / "VOC2007" / "Annotations", ["000010", "000011"], tmp_path / "scored_annotations")
    expected = devkit_aps_from_files(scored, ["000010", "000011"], results, "comp4_det_test", VOC_CLASSES)
    assert list(expected) == ["dog"] and metrics["num_detections"] > 0
    # (A 2-step model rarely hits: tests/evaluation/test_voc_report.py compares files with hits.)
    np.testing.assert_allclose(
        [metrics["voc07_ap_per_class"]["dog"], metrics["voc_ap_per_class"]["dog"]], expected["dog"], atol=1e-9
    )


def _without_boxes_outside(annotations: Path, images: list[str], out: Path) -> Path:
    """The XML files of ``images`` without the objects that lie wholly outside their image: the row checks drop
    them from training and from the metric alike (`box_outside_image`, docs/data.md), so the
    devkit's own loop is given the annotations the metric scores."""
    out.mkdir()
    for path in (annotations / f"{image}.xml" for image in images):
        tree = ET.parse(path)
        root = tree.getroot()
        width, height = (int(root.find(f"size/{side}").text) for side in ("width", "height"))
        for obj in root.findall("object"):
            x1, y1 = (float(obj.find(f"bndbox/{key}").text) - 1 for key in ("xmin", "ymin"))  # VOC is 1-based
            if x1 >= width - 1 or y1 >= height - 1:  # under 1 px a side once clipped
                root.remove(obj)
        tree.write(out / path.name)
    return out
