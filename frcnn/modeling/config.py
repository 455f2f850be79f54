"""The model's Hydra config from torchvision-named flat options, and old checkpoints' configs.

``conf/model/frcnn_r50_fpn.yaml`` composes one node per stage (``transform``, ``backbone``,
``anchor_generator``, ``rpn``, ``roi_heads``), each with a ``_target_``. ``r50_fpn_config``
writes the same tree from the flat options torchvision's ``fasterrcnn_resnet50_fpn`` takes;
it backs ``FasterRCNN.r50_fpn`` and reads the flat ``cfg["model"]`` that checkpoints
written before the stages were separate nodes hold (``checkpoint_model_config``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from frcnn.modeling.transform import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["INITIALISATION_KEYS", "checkpoint_model_config", "r50_fpn_config"]

_MODULE = "frcnn.modeling"
# Keys of the model node that say what training starts from (read by frcnn.initialise), not
# options of the model: `weights` (a whole-detector file) and `weights_classes` (by_name | reinit).
INITIALISATION_KEYS = ("weights", "weights_classes")


def r50_fpn_config(
    num_classes: int | None = 81,
    *,
    backbone_weights: str | None = None,
    norm: str = "frozen_bn",
    trainable_layers: int = 3,
    grad_checkpointing: bool = False,
    fpn_channels: int = 256,
    min_size: int = 800,
    max_size: int = 1333,
    resize: bool = True,
    size_divisible: int = 32,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
    anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 1000,
    rpn_nms_thresh: float = 0.7,
    rpn_fg_iou_thresh: float = 0.7,
    rpn_bg_iou_thresh: float = 0.3,
    rpn_batch_size_per_image: int = 256,
    rpn_positive_fraction: float = 0.5,
    rpn_score_thresh: float = 0.0,
    box_output_size: int = 7,
    box_sampling_ratio: int = 2,
    box_representation_size: int = 1024,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    box_fg_iou_thresh: float = 0.5,
    box_bg_iou_thresh: float = 0.5,
    box_batch_size_per_image: int = 512,
    box_positive_fraction: float = 0.25,
    bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
    validate_targets: bool = True,
) -> dict[str, Any]:
    """The ``FasterRCNN`` R50-FPN config tree (``hydra.utils.instantiate`` builds it).

    Options carry torchvision's names and defaults, plus ``backbone_weights`` (a torchvision
    ``resnet50`` state-dict file), ``norm``, ``trainable_layers``, ``grad_checkpointing``,
    ``resize`` (False: the data pipeline resized already) and ``validate_targets``.
    """
    return {
        "_target_": f"{_MODULE}.FasterRCNN",
        "num_classes": num_classes,
        "validate_targets": validate_targets,
        "transform": {
            "_target_": f"{_MODULE}.transform.ImageTransform",
            "min_size": min_size,
            "max_size": max_size,
            "resize": resize,
            "size_divisible": size_divisible,
            "image_mean": list(image_mean),
            "image_std": list(image_std),
        },
        "backbone": {
            "_target_": f"{_MODULE}.backbone.resnet_fpn",
            "depth": 50,
            "weights": backbone_weights,
            "norm": norm,
            "trainable_layers": trainable_layers,
            "grad_checkpointing": grad_checkpointing,
            "out_channels": fpn_channels,
        },
        "anchor_generator": {
            "_target_": f"{_MODULE}.anchors.AnchorGenerator",
            "sizes": [[size] for size in anchor_sizes],
            "aspect_ratios": [list(aspect_ratios)] * len(anchor_sizes),
        },
        "rpn": {
            "_target_": f"{_MODULE}.rpn.RegionProposalNetwork",
            "head": {
                "_target_": f"{_MODULE}.rpn.RPNHead",
                "channels": fpn_channels,
                "num_anchors_per_location": len(aspect_ratios),
            },
            "fg_iou_thresh": rpn_fg_iou_thresh,
            "bg_iou_thresh": rpn_bg_iou_thresh,
            "batch_size_per_image": rpn_batch_size_per_image,
            "positive_fraction": rpn_positive_fraction,
            "pre_nms_top_n_train": rpn_pre_nms_top_n_train,
            "pre_nms_top_n_test": rpn_pre_nms_top_n_test,
            "post_nms_top_n_train": rpn_post_nms_top_n_train,
            "post_nms_top_n_test": rpn_post_nms_top_n_test,
            "nms_thresh": rpn_nms_thresh,
            "score_thresh": rpn_score_thresh,
        },
        "roi_heads": {
            "_target_": f"{_MODULE}.roi_heads.RoIHeads",
            "pooler": {
                "_target_": f"{_MODULE}.poolers.MultiScaleRoIAlign",
                "strides": [4, 8, 16, 32],
                "output_size": box_output_size,
                "sampling_ratio": box_sampling_ratio,
            },
            "box_head": {
                "_target_": f"{_MODULE}.roi_heads.TwoMLPHead",
                "in_channels": fpn_channels,
                "resolution": box_output_size,
                "representation_size": box_representation_size,
            },
            "box_predictor": {
                "_target_": f"{_MODULE}.roi_heads.BoxPredictor",
                "representation_size": box_representation_size,
                "num_classes": num_classes,
            },
            "fg_iou_thresh": box_fg_iou_thresh,
            "bg_iou_thresh": box_bg_iou_thresh,
            "batch_size_per_image": box_batch_size_per_image,
            "positive_fraction": box_positive_fraction,
            "bbox_reg_weights": list(bbox_reg_weights),
            "score_thresh": box_score_thresh,
            "nms_thresh": box_nms_thresh,
            "detections_per_img": box_detections_per_img,
        },
    }


def checkpoint_model_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``cfg["model"]`` ready to instantiate: a flat one (written before the
    stages were nodes) translated to the tree, and the weights files it was started from
    dropped (``weights``, the backbone's ImageNet file: the checkpoint's state dict replaces them)."""
    model_cfg = {key: value for key, value in model_cfg.items() if key not in INITIALISATION_KEYS}
    if "backbone" not in model_cfg:  # the old flat config: every key an option of r50_fpn_config
        options = {key: value for key, value in model_cfg.items() if key != "_target_"}
        try:
            model_cfg = r50_fpn_config(**options)
        except TypeError as error:
            raise ValueError(
                f"the checkpoint's flat model config is not one frcnn wrote ({error}); "
                "rebuild it with frcnn.modeling.FasterRCNN.r50_fpn(**options) and load its state dict"
            ) from None
    if "weights" in model_cfg["backbone"]:  # a backbone of one's own may take no weights file
        model_cfg["backbone"] = dict(model_cfg["backbone"], weights=None)
    return model_cfg
