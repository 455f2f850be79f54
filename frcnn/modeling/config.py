"""The model's Hydra config from torchvision-named flat options, and old checkpoints' configs.

``conf/model/frcnn_r50_fpn.yaml`` composes one node per stage (``transform``, ``backbone``,
``anchor_generator``, ``rpn``, ``roi_heads``), each with a ``_target_``; its stage files hold the
model's defaults, and nothing else does. ``r50_fpn_config`` reads those files and sets the flat
options torchvision's ``fasterrcnn_resnet50_fpn`` takes on the tree (``FLAT_OPTIONS`` says where
each goes); it backs ``FasterRCNN.r50_fpn`` and reads the flat ``cfg["model"]`` that checkpoints
written before the stages were separate nodes hold (``checkpoint_model_config``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from frcnn.modeling.backbone import pretrained_defaults

__all__ = ["FLAT_OPTIONS", "INITIALISATION_KEYS", "checkpoint_model_config", "r50_fpn_config"]

# Keys of the model node that say what training starts from (read by frcnn.initialise), not
# options of the model: `weights` (a whole-detector file) and `weights_classes` (by_name | reinit).
INITIALISATION_KEYS = ("weights", "weights_classes")

MODEL_CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
# torchvision's flat option -> the key of the composed tree it sets (anchor_sizes and aspect_ratios
# set several keys: see `_set_anchors`).
FLAT_OPTIONS = {
    "backbone_weights": "backbone.weights",
    "norm": "backbone.norm",
    "trainable_layers": "backbone.trainable_layers",
    "grad_checkpointing": "backbone.grad_checkpointing",
    "fpn_channels": "backbone.out_channels",
    "min_size": "transform.min_size",
    "max_size": "transform.max_size",
    "resize": "transform.resize",
    "size_divisible": "transform.size_divisible",
    "image_mean": "transform.image_mean",
    "image_std": "transform.image_std",
    **{f"rpn_{key}": f"rpn.{key}" for key in (
        "pre_nms_top_n_train", "pre_nms_top_n_test", "post_nms_top_n_train", "post_nms_top_n_test", "nms_thresh",
        "fg_iou_thresh", "bg_iou_thresh", "batch_size_per_image", "positive_fraction", "score_thresh",
    )},
    "box_output_size": "roi_heads.pooler.output_size",
    "box_sampling_ratio": "roi_heads.pooler.sampling_ratio",
    "box_representation_size": "roi_heads.box_head.representation_size",
    **{f"box_{key}": f"roi_heads.{key}" for key in (
        "score_thresh", "nms_thresh", "detections_per_img", "fg_iou_thresh", "bg_iou_thresh",
        "batch_size_per_image", "positive_fraction",
    )},
    "bbox_reg_weights": "roi_heads.bbox_reg_weights",
    "validate_targets": "validate_targets",
}  # fmt: skip


def r50_fpn_config(num_classes: int | None = 81, *, resize: bool = True, **options: Any) -> dict[str, Any]:
    """The ``FasterRCNN`` R50-FPN config tree (``hydra.utils.instantiate`` builds it): the
    defaults of ``conf/model/frcnn_r50_fpn.yaml``, with ``options`` set by torchvision's names
    (``rpn_pre_nms_top_n_train``, ``box_score_thresh``, ``min_size``, ``anchor_sizes``,
    ``aspect_ratios``, …; ``FLAT_OPTIONS``) plus ``backbone_weights`` (a torchvision ``resnet50``
    state-dict file), ``norm``, ``trainable_layers``, ``grad_checkpointing``, ``fpn_channels``
    and ``validate_targets``.

    ``resize`` is True here (the model resizes its input to ``min_size``/``max_size``, 800/1333
    by default, as torchvision's does); the training config sets it False because the data
    loader resizes. ``norm`` and ``trainable_layers``, null in ``conf/model`` (``train.py`` sets
    them from the weights it is given), default to torchvision's values for a model from
    ImageNet or COCO weights, FrozenBN and 3, so that torchvision's weights load as they are.
    Raises ``TypeError`` for an option that is not one of these.
    """
    tree = _load(MODEL_CONF / "frcnn_r50_fpn.yaml")
    for key in INITIALISATION_KEYS:  # what the training app starts from, not the model's options
        tree.pop(key, None)
    tree.num_classes = num_classes
    for key, value in pretrained_defaults(True).items():
        if tree.backbone[key] is None:
            tree.backbone[key] = value
    anchors = {key: options.pop(key) for key in ("anchor_sizes", "aspect_ratios") if key in options}
    unknown = sorted(set(options) - set(FLAT_OPTIONS))
    if unknown:
        raise TypeError(f"r50_fpn_config() got unexpected options {unknown}")
    for name, value in {"resize": resize, **options}.items():
        OmegaConf.update(tree, FLAT_OPTIONS[name], list(value) if isinstance(value, tuple) else value, merge=False)
    _set_anchors(tree, **anchors)
    return OmegaConf.to_container(tree, resolve=True)


def _set_anchors(tree: DictConfig, anchor_sizes: Any = None, aspect_ratios: Any = None) -> None:
    """torchvision's one size per level and one list of ratios for all levels, on the tree."""
    if anchor_sizes is not None:
        tree.anchor_generator.sizes = [[size] for size in anchor_sizes]
    if aspect_ratios is not None or anchor_sizes is not None:
        ratios = list(aspect_ratios) if aspect_ratios is not None else list(tree.anchor_generator.aspect_ratios[0])
        tree.anchor_generator.aspect_ratios = [ratios] * len(tree.anchor_generator.sizes)
        tree.rpn.head.num_anchors_per_location = len(ratios)


def _load(path: Path) -> DictConfig:
    """A ``conf/model`` file with its defaults list merged in, as Hydra composes it: a
    ``stage: option`` entry loads ``<stage>/<option>.yaml`` under ``stage``, a bare name a file
    of the same folder, ``_self_`` the file's own keys (last when absent)."""
    node = OmegaConf.load(path)
    defaults = list(node.pop("defaults", None) or ["_self_"])
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create()
    for entry in defaults:
        if entry == "_self_":
            merged = OmegaConf.merge(merged, node)
        elif isinstance(entry, str):
            merged = OmegaConf.merge(merged, _load(path.parent / f"{entry}.yaml"))
        else:
            ((stage, option),) = entry.items()
            merged = OmegaConf.merge(merged, {stage: _load(path.parent / stage / f"{option}.yaml")})
    return merged


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
