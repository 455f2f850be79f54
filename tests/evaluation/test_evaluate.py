"""evaluate.py end to end on shapes, and its one-line errors for checkpoints that are not ours."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from frcnn.data.coco_classes import COCO_CATEGORY_IDS

REPO = Path(__file__).resolve().parents[2]
SHAPES = {"num_train": 8, "num_val": 6, "seed": 0, "train_shards": 1, "val_shards": 1}


def run_evaluate(*overrides: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def shapes_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of the training app after two CPU steps on a tiny shapes set."""
    import lightning.pytorch as pl

    from frcnn.lit import DetectionModule

    folder = tmp_path_factory.mktemp("train")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["trainer=cpu", "scheduler=cosine"])
    cfg = OmegaConf.to_container(cfg, resolve=False)
    cfg["data"] = {
        "_target_": "frcnn.data.datamodule.DetectionDataModule",
        "source": {"_target_": "frcnn.data.sources.shapes.Shapes", "_partial_": True},
        "path": str(folder / "shapes"),
        "batch_size": 2,
        "num_workers": 0,
        "resize": "keep_ratio",
        "min_size": 128,
        "max_size": 192,
        "val_limit": 4,
        "shapes": SHAPES,
    }
    cfg["paths"] = {"output_dir": str(folder)}
    cfg["model"]["num_classes"] = 81
    cfg["model"]["rpn"]["post_nms_top_n_train"] = 200
    cfg["model"]["roi_heads"]["batch_size_per_image"] = 64
    cfg["scheduler"]["warmup_steps"] = 1
    cfg["optimizer"]["lr"] = 1e-4  # two steps that keep the initial, box-producing heads sane
    cfg = OmegaConf.to_container(OmegaConf.create({k: cfg[k] for k in ("model", "data", "optimizer", "scheduler", "module", "paths")}), resolve=True)

    import hydra

    torch.manual_seed(0)
    datamodule = hydra.utils.instantiate(cfg["data"], _convert_="all")
    module = DetectionModule(cfg, datamodule.class_names, datamodule.label_to_category_id)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(folder),
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    path = folder / "last.ckpt"
    trainer.save_checkpoint(path)
    return path


def _pycocotools_stats(run_dir: Path) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(run_dir / "ground_truth.json"))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(run_dir / "detections.json")), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


@pytest.mark.slow
def test_evaluate_end_to_end(shapes_checkpoint, tmp_path):
    run_dir = tmp_path / "eval"
    # Low score threshold: a 2-step model's scores are low, and the files should hold detections.
    result = run_evaluate(
        f"ckpt={shapes_checkpoint}", "limit=5", "visualize=2", "batch_size=2", "model.roi_heads.score_thresh=0.0",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] =" in result.stdout
    assert " class " in result.stdout

    metrics = json.loads((run_dir / "metrics.json").read_text())
    ground_truth = json.loads((run_dir / "ground_truth.json").read_text())
    detections = json.loads((run_dir / "detections.json").read_text())
    assert metrics["num_images"] == len(ground_truth["images"]) == 5  # limit wins over the stored val_limit=4
    assert metrics["num_detections"] == len(detections) > 0
    assert {d["image_id"] for d in detections} <= {image["id"] for image in ground_truth["images"]}
    assert len(ground_truth["categories"]) == 80 and len(metrics["per_class"]) == 80
    # COCO's own category ids: the shapes are tv, orange, kite and apple.
    assert {a["category_id"] for a in ground_truth["annotations"]} <= {72, 55, 38, 53}
    assert {d["category_id"] for d in detections} <= set(COCO_CATEGORY_IDS)
    assert "ground truth: the stored annotations of the val split; scored the 5 evaluated images of its 5" in result.stdout
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    np.testing.assert_allclose([metrics[name] for name in names], _pycocotools_stats(run_dir), atol=1e-6, rtol=0)
    assert len(list((run_dir / "pictures").glob("*.png"))) == 2
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_evaluate_a_bare_state_dict_takes_the_classes_from_the_data(shapes_checkpoint, tmp_path):
    """A bare state dict (what ``python -m frcnn.convert`` writes) has no config: the composed
    model's stages take ``model.num_classes`` from the data given on the command line."""
    state = torch.load(shapes_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    bare = tmp_path / "bare.pt"
    torch.save({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}, bare)
    result = run_evaluate(
        f"ckpt={bare}", "data=shapes", f"data.path={shapes_checkpoint.parent / 'shapes'}", "data.min_size=128",
        "data.max_size=192", *(f"data.shapes.{key}={value}" for key, value in SHAPES.items()), "limit=2",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["num_images"] == 2


@pytest.mark.slow
def test_evaluate_proposals_and_a_model_that_predicts_nothing(shapes_checkpoint, tmp_path):
    run_dir = tmp_path / "eval"
    result = run_evaluate(
        f"ckpt={shapes_checkpoint}", "limit=2", "visualize=1", "proposals=true", "model.roi_heads.score_thresh=1.01",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_detections"] == 0
    assert json.loads((run_dir / "detections.json").read_text()) == []
    assert all(metrics[name] in (0.0, -1.0) for name in ("AP", "AP50", "AR100")) and metrics["AR100"] == 0.0
    assert len(list((run_dir / "pictures").glob("*.png"))) == 1


def _shapes_instances_file(checkpoint: Path, path: Path, **changes) -> dict:
    """The shapes val split's annotations as an instances file, changed so that it is not what
    the stored rows give: half the areas, one crowd, images listed backwards; then ``changes``."""
    import hydra

    data = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["cfg"]["data"]
    datamodule = hydra.utils.instantiate({**data, "val_limit": None}, _convert_="all")
    datamodule.setup("validate")
    instances = datamodule.val_ground_truth()
    instances["images"] = instances["images"][::-1]
    for annotation in instances["annotations"]:
        annotation["area"] /= 2
    instances["annotations"][0]["iscrowd"] = 1
    instances.update(changes)
    path.write_text(json.dumps(instances))
    return instances


@pytest.mark.slow
def test_evaluate_with_gt_json(shapes_checkpoint, tmp_path):
    """`gt_json=`: the printed table is pycocotools' over detections.json and that very file."""
    instances = _shapes_instances_file(shapes_checkpoint, tmp_path / "instances.json")
    run_dir = tmp_path / "eval"
    result = run_evaluate(
        f"ckpt={shapes_checkpoint}", f"gt_json={tmp_path / 'instances.json'}", "visualize=0", "batch_size=3",
        "model.roi_heads.score_thresh=0.0", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    printed = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "instances.json"))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(run_dir / "detections.json")), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
    with contextlib.redirect_stdout(printed):
        coco_eval.summarize()
    assert printed.getvalue().rstrip("\n") in result.stdout
    assert f"ground truth: gt_json={tmp_path / 'instances.json'}; scored the 6 evaluated images of its 6" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_ground_truth_images"] == len(instances["images"]) == 6
    assert json.loads((run_dir / "ground_truth.json").read_text())["annotations"][0]["iscrowd"] == 1


@pytest.mark.slow
def test_gt_json_with_other_ids_is_one_line(shapes_checkpoint, tmp_path):
    categories = [{"id": c, "name": str(c)} for c in range(1, 81)]  # contiguous, not COCO's ids
    instances = _shapes_instances_file(shapes_checkpoint, tmp_path / "instances.json", categories=categories)
    instances["images"] = instances["images"][:2]
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    result = run_evaluate(f"ckpt={shapes_checkpoint}", f"gt_json={tmp_path / 'instances.json'}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"evaluate.py: gt_json={tmp_path / 'instances.json'} does not match the data: 4 of the data's 6 image ids are "
        "not among its 2 (e.g. 1000001); 9 of our 80 category ids are not among its 80 (e.g. 81); "
        "9 of its category ids are not ours (e.g. 12)"
    ]


# ------------------------------------------------------------------ errors


@pytest.mark.slow
def test_a_coco_folder_whose_instances_json_is_not_json_is_one_line(shapes_checkpoint, tmp_path):
    (tmp_path / "data" / "val" / "images").mkdir(parents=True)
    (tmp_path / "data" / "val" / "instances.json").write_text("{not json")
    result = run_evaluate(
        f"ckpt={shapes_checkpoint}", "data=coco_folder", f"data.path={tmp_path / 'data'}", "data.train_split=val",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"evaluate.py: {tmp_path / 'data' / 'val' / 'instances.json'} is not a JSON file")


def test_command_line_error_is_one_line(tmp_path):
    result = run_evaluate(f"ckpt={tmp_path / 'missing.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"evaluate.py: checkpoint not found: {tmp_path / 'missing.ckpt'}"]
