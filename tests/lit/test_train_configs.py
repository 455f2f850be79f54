"""Every experiment and every option of every config group composes and instantiates."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import hydra
import lightning.pytorch as pl
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from frcnn.checkpoint import instantiate_model
from frcnn.modeling import FasterRCNN
from frcnn.modeling.config import INITIALISATION_KEYS

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def _coco_folder(root: Path) -> Path:
    """The smallest COCO-format folder the data module accepts."""
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        instances = {"images": [], "annotations": [], "categories": [{"id": 3, "name": "car"}]}
        (root / split / "instances.json").write_text(json.dumps(instances))
    return root


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiment_instantiates(compose_train, tmp_path, experiment):
    cfg = compose_train([f"experiment={experiment}"])
    if cfg.data.source._target_.endswith("CocoFolder"):  # experiment=finetune: your own folder
        cfg = compose_train([f"experiment={experiment}", f"data.path={_coco_folder(tmp_path / 'coco')}"])
    elif OmegaConf.is_missing(cfg.data, "path"):  # a folder the user names (VOC); nothing is read from it here
        cfg.data.path = str(tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    assert cfg.model.num_classes in (None, datamodule.num_classes)  # null: train.py takes the data's
    cfg.model.num_classes = datamodule.num_classes
    model = instantiate_model(cfg.model)
    assert isinstance(model, FasterRCNN)
    assert isinstance(hydra.utils.instantiate(cfg.trainer, precision="32-true"), pl.Trainer)


def test_seed_demo_is_the_seed_recipe(compose_train):
    cfg = compose_train(["experiment=seed_demo"])
    assert (cfg.data.resize, cfg.data.square_size) == ("square", 400)
    assert (cfg.model.backbone.trainable_layers, cfg.model.backbone.grad_checkpointing) == (1, True)
    assert (cfg.optimizer.lr, cfg.optimizer.scale_lr) == (0.005, False)  # the notebook's rate at its batch
    assert (cfg.optimizer.algorithm.momentum, cfg.optimizer.algorithm.weight_decay) == (0.9, 1e-4)
    assert (cfg.trainer.gradient_clip_val, cfg.trainer.precision) == (10.0, "16-mixed")


def _recipe(cfg) -> dict:
    """What a published COCO recipe fixes, from a composed config."""
    return {
        "total_batch": cfg.data.batch_size * cfg.trainer.devices * cfg.trainer.num_nodes * cfg.trainer.accumulate_grad_batches,
        "lr": (cfg.optimizer.lr, cfg.optimizer.reference_batch, cfg.optimizer.scale_lr),
        "sgd": (cfg.optimizer.algorithm._target_, cfg.optimizer.algorithm.momentum, cfg.optimizer.algorithm.weight_decay),
        "warmup": (cfg.scheduler.warmup_steps, cfg.scheduler.warmup_factor),
        "steps": (list(cfg.scheduler.milestones), cfg.scheduler.gamma, cfg.scheduler.steps_per_epoch),
        "length": (cfg.trainer.max_epochs, cfg.trainer.max_steps),
        "clip": cfg.trainer.gradient_clip_val,
        "backbone": (cfg.model.backbone.norm, cfg.model.backbone.trainable_layers, cfg.require_weights),
        "sizes": (OmegaConf.to_object(cfg.data).get("min_size"), cfg.data.max_size, cfg.data.hflip_prob),
        "grouping": cfg.data.aspect_ratio_grouping,
        "rpn_train": (cfg.model.rpn.pre_nms_top_n_train, cfg.model.rpn.post_nms_top_n_train),
    }


def test_coco_26ep_is_torchvisions_recipe(compose_train):
    """references/detection: --epochs 26 --lr-steps 16 22 --aspect-ratio-group-factor 3, 8 GPUs x 2 images."""
    assert _recipe(compose_train(["experiment=coco_26ep"])) == {
        "total_batch": 16, "lr": (0.02, 16, True), "sgd": ("torch.optim.SGD", 0.9, 1e-4), "warmup": (1000, 0.001),
        "steps": ([16, 22], 0.1, None), "length": (26, -1), "clip": None, "backbone": ("frozen_bn", 3, "pretrained"),
        "sizes": (800, 1333, 0.5), "grouping": True, "rpn_train": (2000, 2000),
    }  # fmt: skip


def test_coco_1x_is_detectron2s_recipe(compose_train):
    """faster_rcnn_R_50_FPN_1x.yaml + Base-RCNN-FPN.yaml: 90k iterations of 16 images, steps 60k and 80k."""
    assert _recipe(compose_train(["experiment=coco_1x"])) == {
        "total_batch": 16, "lr": (0.02, 16, True), "sgd": ("torch.optim.SGD", 0.9, 1e-4), "warmup": (1000, 0.001),
        "steps": ([60000, 80000], 0.1, 1), "length": (-1, 90000), "clip": None, "backbone": ("frozen_bn", 3, "pretrained"),
        "sizes": ([640, 672, 704, 736, 768, 800], 1333, 0.5), "grouping": True, "rpn_train": (2000, 1000),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("group", "option"),
    [(group, option) for group in ("trainer", "precision", "callbacks", "logger", "debug") for option in _options(group)],
)
def test_group_option_instantiates(compose_train, tiny_overrides, group, option):
    if (group, option) == ("trainer", "gpu") and not torch.cuda.is_available():
        pytest.skip("trainer=gpu needs CUDA")
    overrides = [*tiny_overrides, f"{group}={option}"]
    cfg = compose_train(overrides)
    for entry in (cfg.get("callbacks") or {}).values():
        if entry is not None:
            hydra.utils.instantiate(entry)
    for entry in (cfg.get("logger") or {}).values():
        hydra.utils.instantiate(entry)
    precision = "32-true" if cfg.trainer.precision in ("auto", "16-mixed") else cfg.trainer.precision
    assert isinstance(hydra.utils.instantiate(cfg.trainer, precision=precision), pl.Trainer)


@pytest.mark.parametrize("data", _options("data"))
def test_data_option_instantiates(compose_train, tmp_path, data):
    overrides = [f"data={data}"]
    if data == "coco_folder":
        overrides.append(f"data.path={_coco_folder(tmp_path / 'coco')}")
    elif data == "voc":
        overrides.append(f"data.path={tmp_path}")  # the VOC classes are fixed: nothing is read yet
    cfg = compose_train(overrides)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    assert datamodule.class_names[0] == "background"


@pytest.mark.parametrize("optimizer", _options("optimizer"))
@pytest.mark.parametrize("scheduler", _options("scheduler"))
def test_optimizer_and_scheduler_instantiate(compose_train, optimizer, scheduler):
    cfg = compose_train([f"optimizer={optimizer}", f"scheduler={scheduler}"])
    params = [torch.nn.Parameter(torch.zeros(2))]
    optim = hydra.utils.instantiate(cfg.optimizer, _convert_="all")(params, total_batch=cfg.optimizer.reference_batch)
    assert optim.param_groups[0]["lr"] == cfg.optimizer.lr
    schedule = hydra.utils.instantiate(cfg.scheduler, _convert_="all")(optim, steps_per_epoch=100, total_steps=1200)
    assert schedule.get_last_lr()[0] == pytest.approx(cfg.optimizer.lr * cfg.scheduler.warmup_factor)


def test_sgd_defaults_are_torchvisions(compose_train):
    cfg = compose_train([])
    assert (cfg.optimizer.lr, cfg.optimizer.reference_batch, cfg.optimizer.scale_lr) == (0.02, 16, True)
    assert (cfg.optimizer.algorithm.momentum, cfg.optimizer.algorithm.weight_decay) == (0.9, 1e-4)
    assert (cfg.scheduler.warmup_steps, list(cfg.scheduler.milestones), cfg.scheduler.gamma) == (500, [8, 11], 0.1)
    assert cfg.trainer.gradient_clip_val == 10.0


def _nodes(node, path="model"):
    """Every ``_target_`` node of a config tree, with its dotted path."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for key, child in node.items():
            yield from _nodes(child, f"{path}.{key}")


@pytest.mark.parametrize("model", _options("model"))
def test_model_config_names_every_stage_option(compose_train, model):
    """Each node's keys are exactly its target's parameters: every option in a yaml does something.
    The model node's initialisation keys are train.py's (frcnn.initialise), not the model's."""
    cfg = compose_train([f"model={model}", "model.num_classes=3"])
    nodes = dict(_nodes(cfg.model))
    assert {"model.transform", "model.backbone", "model.anchor_generator", "model.rpn", "model.roi_heads"} <= set(nodes)
    assert set(INITIALISATION_KEYS) <= set(cfg.model)
    for path, node in nodes.items():
        options = set(inspect.signature(hydra.utils.get_method(node._target_)).parameters)
        keys = {key for key in node if key != "_target_" and not (path == "model" and key in INITIALISATION_KEYS)}
        assert keys <= options, f"{path}: {keys - options} are not options of {node._target_}"


@pytest.mark.parametrize(
    ("stage", "option"),
    [(stage, option) for stage in ("transform", "backbone", "anchor_generator", "rpn", "roi_heads") for option in _options(f"model/{stage}")],
)
def test_model_stage_option_instantiates(compose_train, stage, option):
    cfg = compose_train([f"model/{stage}={option}", "model.num_classes=3"])
    model = instantiate_model(cfg.model)
    assert isinstance(model, FasterRCNN) and model.num_classes == 3


def test_users_overrides_reach_the_stages(compose_train):
    cfg = compose_train(["model.anchor_generator.sizes=[[16],[32],[64],[128],[256]]", "model.roi_heads.batch_size_per_image=256", "model.num_classes=5"])
    model = instantiate_model(cfg.model)
    assert model.roi_heads.sampler.batch_size_per_image == 256
    assert [float(cell[1, 2] * 2) for cell in model.anchor_generator.cell_anchors] == [16, 32, 64, 128, 256]  # ratio 1 width
    assert model.roi_heads.box_predictor.num_classes == 5


def test_optuna_search_composes(compose_train):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install hydra-optuna-sweeper")
    cfg = compose_train(["hparams_search=optuna"])
    assert cfg.hydra.sweeper.direction == "maximize"
    assert cfg.monitor == "val/map"


def test_finetune_is_the_tutorials_recipe(compose_train):
    cfg = compose_train(["experiment=finetune"])
    assert cfg.data.source._target_ == "frcnn.data.sources.coco_folder.CocoFolder" and cfg.require_weights == "detector"
    algorithm = cfg.optimizer.algorithm
    assert (cfg.optimizer.lr, cfg.optimizer.reference_batch, algorithm.momentum, algorithm.weight_decay, cfg.data.batch_size) == (0.005, 2, 0.9, 5e-4, 2)
    assert (list(cfg.scheduler.milestones), cfg.scheduler.gamma, cfg.trainer.max_epochs) == ([3, 6, 9], 0.1, 10)
    assert (cfg.trainer.val_check_interval, cfg.trainer.check_val_every_n_epoch, cfg.module.val_loss) == (1.0, 1, True)
