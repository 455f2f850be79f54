"""frcnn.modeling.config: the flat torchvision-named options and old checkpoints' flat
``cfg["model"]`` build the same model as the composed ``conf/model`` tree."""

from __future__ import annotations

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from frcnn.checkpoint import build_model, instantiate_model, load_checkpoint
from frcnn.lit import DetectionModule
from frcnn.modeling import FasterRCNN
from frcnn.modeling.config import INITIALISATION_KEYS, checkpoint_model_config, r50_fpn_config

# conf/model/frcnn_r50_fpn.yaml as checkpoints written before the stages were nodes hold it
# (resolved, num_classes filled in by train.py).
OLD_FLAT_MODEL = {
    "_target_": "frcnn.modeling.FasterRCNN", "num_classes": 5, "backbone_weights": "/gone/resnet50.pth",
    "norm": "frozen_bn", "trainable_layers": 3, "grad_checkpointing": False, "fpn_channels": 256,
    "min_size": 800, "max_size": 1333, "resize": False, "size_divisible": 32,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    "anchor_sizes": [32, 64, 128, 256, 512], "aspect_ratios": [0.5, 1.0, 2.0],
    "rpn_pre_nms_top_n_train": 2000, "rpn_pre_nms_top_n_test": 1000, "rpn_post_nms_top_n_train": 2000,
    "rpn_post_nms_top_n_test": 1000, "rpn_nms_thresh": 0.7, "rpn_fg_iou_thresh": 0.7, "rpn_bg_iou_thresh": 0.3,
    "rpn_batch_size_per_image": 256, "rpn_positive_fraction": 0.5, "rpn_score_thresh": 0.0,
    "box_output_size": 7, "box_sampling_ratio": 2, "box_representation_size": 1024, "box_score_thresh": 0.05,
    "box_nms_thresh": 0.5, "box_detections_per_img": 100, "box_fg_iou_thresh": 0.5, "box_bg_iou_thresh": 0.5,
    "box_batch_size_per_image": 512, "box_positive_fraction": 0.25, "bbox_reg_weights": [10.0, 10.0, 5.0, 5.0],
    "validate_targets": True,
}


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


# What train.py fills in for the null backbone options of a run from ImageNet weights (as old checkpoints were).
PRETRAINED = ["model.num_classes=5", "model.backbone.norm=frozen_bn", "model.backbone.trainable_layers=3"]


def test_old_flat_config_translates_to_the_composed_tree(compose_train):
    composed = OmegaConf.to_container(compose_train(PRETRAINED).model, resolve=True)
    translated = checkpoint_model_config(OLD_FLAT_MODEL)
    # The flat config named the sizes of a resize that is off (the data module resizes): inert.
    assert translated["transform"].pop("min_size") == 800 and translated["transform"].pop("max_size") == 1333
    assert translated == checkpoint_model_config(composed)


def test_factory_defaults_are_the_yaml(compose_train):
    """One place for the defaults: the factory reads conf/model, so a value changed there
    changes both."""
    # The two backbone options the training app sets from the weights: the factory's are torchvision's.
    composed = OmegaConf.to_container(compose_train([*PRETRAINED, "model.num_classes=7"]).model, resolve=True)
    for key in INITIALISATION_KEYS:  # what train.py starts the model from, not the model's options
        composed.pop(key)
    assert r50_fpn_config(7, resize=False) == composed
    assert r50_fpn_config(7)["transform"]["resize"] is True  # a model for Python users resizes its input


def test_old_flat_config_builds_the_same_model(compose_train):
    old = hydra.utils.instantiate(checkpoint_model_config(OLD_FLAT_MODEL), _convert_="all")
    new = instantiate_model(compose_train([*PRETRAINED, "model.num_classes=5"]).model)
    assert isinstance(old, FasterRCNN) and _shapes(old) == _shapes(new)
    assert old.roi_heads.sampler.batch_size_per_image == 512 and old.rpn.post_nms_top_n == {"train": 2000, "test": 1000}


def test_factory_takes_torchvisions_names():
    model = FasterRCNN.r50_fpn(num_classes=4, box_batch_size_per_image=64, rpn_post_nms_top_n_test=50, fpn_channels=64)
    assert (model.roi_heads.sampler.batch_size_per_image, model.rpn.post_nms_top_n["test"]) == (64, 50)
    assert model.backbone.out_channels == 64 and model.roi_heads.box_head.fc6.in_features == 64 * 7 * 7


def test_unknown_flat_key_is_one_line():
    with pytest.raises(ValueError, match="not one frcnn wrote .*FasterRCNN.r50_fpn") as error:
        checkpoint_model_config({**OLD_FLAT_MODEL, "box_head_kind": "conv"})
    assert "\n" not in str(error.value)


def test_old_checkpoint_loads_in_the_module_and_the_detector(tmp_path):
    model = FasterRCNN.r50_fpn(num_classes=5, resize=False, fpn_channels=32, box_representation_size=64)
    flat = {**OLD_FLAT_MODEL, "fpn_channels": 32, "box_representation_size": 64}
    path = tmp_path / "old.ckpt"
    hparams = {"cfg": {"model": flat}, "class_names": ["background", "a", "b", "c", "d"], "label_to_category_id": None}
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"hyper_parameters": hparams, "state_dict": state}, path)
    module = DetectionModule.from_checkpoint(path)
    rebuilt = build_model(load_checkpoint(path))
    for loaded in (module.model, rebuilt):
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
