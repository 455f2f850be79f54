"""Checks that `train.py` runs before the first step, each failing in one line that names the key and the fix.

- `check_config`: `model.weights` where the experiment requires it (`require_weights: detector`), data keys (`data.batch_size`, `data.num_workers`, `data.min_size`/`max_size`/
  `square_size`, `data.max_pixels`, `data.max_skip_fraction`), and every folder the run will
  write (run folder, checkpoint folders, the data source's folder when its data is still to be made).
  (Parquet footers are the data source's own check, when it opens a split.)
- `resolve_num_classes`: an explicit `model.num_classes` that conflicts with the data.
- `resolve_backbone_training`: no pretrained weights where the recipe needs them (`require_weights`),
  and the backbone's null `norm`/`trainable_layers`; `check_frozen_layers`: backbone layers
  frozen at random weights (a warning in one line).
- `check_resume_checkpoint`: `ckpt_path` is a checkpoint of this app whose weights fit the
  model built from this config (not random bytes, a bare state dict or a torchvision one).
- `check_checkpoint_space`: each checkpoint folder has room for a checkpoint of the model built.
- `RunDirCheck`: a Hydra callback for `hydra.run.dir`/`hydra.sweep.dir`, which Hydra creates
  before `train.py`'s own code runs.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from frcnn.data.datamodule import build_source
from frcnn.checkpoint import CheckpointError, load_checkpoint
from frcnn.modeling.backbone import pretrained_defaults
from frcnn.modeling.norm import FrozenBatchNorm2d

log = logging.getLogger("train")


class PreflightError(ValueError):
    """A config, folder or checkpoint that would fail the run later; `str(error)` is one line."""


def check_config(cfg: Mapping[str, Any]) -> None:
    """The data keys and the folders of a composed `train.yaml` config (see the module docstring)."""
    if cfg.get("require_weights") not in (None, "pretrained", "detector"):
        raise PreflightError(f"require_weights={cfg.get('require_weights')!r}: use null, pretrained or detector")
    if cfg.get("require_weights") == "detector" and not cfg["model"].get("weights"):
        raise PreflightError(
            "model.weights is required: fine-tuning starts from a trained detector, pass model.weights=PATH "
            "(a .ckpt, a python -m frcnn.convert file, a torchvision .pth) or model.weights=FasterRCNN_ResNet50_FPN_Weights.COCO_V1"
        )
    check_data(cfg["data"])
    check_trainer(cfg.get("trainer") or {})
    check_writable_dir(cfg["paths"]["output_dir"], "hydra.run.dir")
    for key, folder in checkpoint_folders(cfg).items():
        check_writable_dir(folder, key)
    folder = build_source(cfg["data"]).folder_to_write()
    if folder is not None:
        check_writable_dir(folder, "data.path", why="the data is generated there on first use")


def checkpoint_folders(cfg: Mapping[str, Any]) -> dict[str, str]:
    """`callbacks.<name>.dirpath` -> folder, for every callback that writes checkpoints."""
    callbacks = cfg.get("callbacks") or {}
    return {f"callbacks.{name}.dirpath": entry["dirpath"] for name, entry in callbacks.items() if entry and entry.get("dirpath")}


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About what a training checkpoint of `model` takes on disk: its weights and buffers, plus
    one optimizer slot (SGD's momentum) per trainable weight; AdamW's two make it ~1.5x more."""
    state = sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values())
    trainable = sum(param.numel() * param.element_size() for param in model.parameters() if param.requires_grad)
    return state + trainable


def check_checkpoint_space(cfg: Mapping[str, Any], model: torch.nn.Module) -> None:
    """Stop when a checkpoint folder lacks room for one checkpoint of `model`; warn below three
    (`last.ckpt`, its atomic replacement being written, the best checkpoint)."""
    size = checkpoint_bytes(model)
    for key, folder in checkpoint_folders(cfg).items():
        free = shutil.disk_usage(Path(folder).expanduser()).free
        where = f"{key}={folder} has {free / 2**20:,.1f} MiB free; a checkpoint of this model takes about {size / 2**20:,.1f} MiB"
        if free < size:
            raise PreflightError(f"{where}: free some space or choose another {key}")
        if free < 3 * size:
            log.warning("%s and a run keeps up to three at once: it may stop at a checkpoint write", where)


def check_data(data: Mapping[str, Any]) -> None:
    """`data.*` values the loaders and the resize would reject late, or silently misuse."""
    _whole(data, "batch_size", 1, "images per device and step")
    _whole(data, "num_workers", 0, "loader processes per device; 0 loads in the training process")
    resize = data.get("resize", "keep_ratio")
    if resize == "keep_ratio":
        sizes = data.get("min_size")
        sizes = list(sizes) if isinstance(sizes, Sequence) and not isinstance(sizes, str) and len(sizes) else [sizes]
        for size in sizes:  # a list: one short side per training image, drawn (validation: the last)
            _whole({"min_size": size}, "min_size", 1, "the short side in pixels after resizing")
        _whole(data, "max_size", 1, "the cap on the long side in pixels")
        if data["max_size"] <= max(sizes):
            raise PreflightError(
                f"data.max_size={data['max_size']} is not above data.min_size={data['min_size']}: "
                "set data.max_size > data.min_size (e.g. 1333 for 800)"
            )
    elif resize == "square":
        _whole(data, "square_size", 1, "the side in pixels of the square input")
    if data.get("max_pixels") is not None:
        _whole(data, "max_pixels", 1, "images with more pixels are skipped")
    if data.get("val_limit") is not None:
        _whole(data, "val_limit", 1, "the first N validation images; null for all")
    fraction = data.get("max_skip_fraction")
    if fraction is not None and not (isinstance(fraction, (int, float)) and 0 <= fraction <= 1):
        raise PreflightError(f"data.max_skip_fraction={fraction!r}: must be a fraction in 0..1 (e.g. 0.01 for 1 %)")


def _whole(data: Mapping[str, Any], key: str, minimum: int, meaning: str) -> None:
    check_whole(data.get(key), f"data.{key}", minimum, meaning)


def check_whole(value: Any, key: str, minimum: int, meaning: str) -> None:
    """`value` (of the key `key`) is a whole number >= `minimum`, else one line saying so."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PreflightError(f"{key}={value!r}: must be a whole number >= {minimum} ({meaning})")


def check_trainer(trainer: Mapping[str, Any]) -> None:
    """`trainer.*` values Lightning would reject with a traceback."""
    interval = trainer.get("val_check_interval")
    if interval is not None and (isinstance(interval, bool) or not (
        (isinstance(interval, int) and interval >= 1) or (isinstance(interval, float) and 0 < interval <= 1)
    )):  # fmt: skip
        raise PreflightError(
            f"trainer.val_check_interval={interval!r}: give a whole number of steps >= 1, a fraction of the "
            "epoch in (0, 1], or null for once per epoch"
        )


def check_writable_dir(path: str | Path, key: str, why: str = "") -> None:
    """Make sure `path` is, or can be made, a folder this process can write files into (it is created)."""
    reason = _unwritable(Path(path).expanduser(), create=True)
    if reason:
        where = f" ({why})" if why else ""
        raise PreflightError(f"{key}={path} cannot be written{where}: {reason}: choose another {key}")


def _unwritable(folder: Path, create: bool) -> str | None:
    """Why files cannot be written into `folder` (made first if `create`, else its nearest
    existing parent is tried), or None when they can."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    target = folder if create else existing
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as error:
        return f"cannot create files in {target} ({error.strerror or error})"
    return None


def resolve_num_classes(model_num_classes: int | None, data_num_classes: int, class_source: str) -> int:
    """The model's class count (background included): the data's, which an explicit
    `model.num_classes` must equal."""
    if model_num_classes is not None and model_num_classes != data_num_classes:
        raise PreflightError(
            f"model.num_classes={model_num_classes} but {class_source} has {data_num_classes} classes "
            f"(background included): leave model.num_classes unset (null) to take the data's"
        )
    return data_num_classes


def resolve_backbone_training(model_cfg: Mapping[str, Any], require_weights: str | None = None) -> dict[str, Any]:
    """The backbone's null `norm` and `trainable_layers` filled in by torchvision's rule
    (`frcnn.modeling.backbone.pretrained_defaults`), for `train.py` to set before the model is built.

    Stops when `require_weights` (`pretrained`: the COCO recipes) and neither `model.backbone.weights` nor
    `model.weights` is set.
    """
    backbone = model_cfg.get("backbone") or {}
    pretrained = has_pretrained_weights(model_cfg)
    if require_weights and not pretrained:
        raise PreflightError(
            "this recipe trains from pretrained weights but model.backbone.weights and model.weights are null: "
            "set model.backbone.weights=/path/to/resnet50-0676ba61.pth (torchvision's ImageNet V1 file; "
            "model.backbone.weights=IMAGENET1K_V1 downloads it) or model.weights=<detector weights file>"
        )
    defaults = pretrained_defaults(pretrained)
    return {key: value for key, value in defaults.items() if key in backbone and backbone[key] is None}


def has_pretrained_weights(model_cfg: Mapping[str, Any]) -> bool:
    """Whether the run starts from ImageNet backbone weights or from whole-detector weights."""
    return bool((model_cfg.get("backbone") or {}).get("weights") or model_cfg.get("weights"))


def check_frozen_layers(model_cfg: Mapping[str, Any], backbone: torch.nn.Module) -> None:
    """Warn in one line when `backbone` (as built) freezes layers that no weights initialise:
    they would keep their random values for the whole run."""
    if has_pretrained_weights(model_cfg):
        return
    frozen_weights = sum(not parameter.requires_grad for parameter in backbone.parameters())
    frozen_norms = sum(isinstance(module, FrozenBatchNorm2d) for module in backbone.modules())
    if frozen_weights or frozen_norms:
        node = model_cfg["backbone"]
        log.warning(
            "model.backbone.trainable_layers=%s and model.backbone.norm=%s freeze %d weight tensors and %d batch norms "
            "of the backbone, but model.backbone.weights is null: they keep their random initial values for the whole "
            "run; give ImageNet weights (model.backbone.weights=...) or train every layer (model.backbone.trainable_layers "
            "and model.backbone.norm left null, or set to the backbone's maximum and bn)",
            node.get("trainable_layers"), node.get("norm"), frozen_weights, frozen_norms,
        )  # fmt: skip


def check_resume_checkpoint(path: str | Path, model: torch.nn.Module) -> None:
    """`path` is a checkpoint of this app whose weights have the names and shapes of `model`'s."""
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        raise PreflightError(f"ckpt_path: {error}") from None
    if checkpoint.is_bare:
        raise PreflightError(
            f"ckpt_path={path} holds model weights only, not a training checkpoint (optimizer, step, data "
            f"position): start a run from these weights with model.weights={path}, or resume from a run's checkpoints/last.ckpt"
        )
    expected = model.state_dict()
    found = checkpoint.model_state_dict
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    reshaped = [name for name in expected if name in found and found[name].shape != expected[name].shape]
    if missing or unexpected or reshaped:
        if reshaped:
            name = reshaped[0]
            example = f"{name} is {list(found[name].shape)} there, {list(expected[name].shape)} here"
        else:
            example = f"e.g. {(missing or unexpected)[0]!r}"
        raise PreflightError(
            f"ckpt_path={path} was trained with another model or data config ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(reshaped)} reshaped weights; {example}): resume with the "
            "model and data of that run (its .hydra/config.yaml)"
        )


class RunDirCheck(Callback):
    """Stop with one line when Hydra's run (or sweep) folder cannot be created, before Hydra tries.

    Hydra makes the folder before the task function runs, so `train.py` cannot catch the error
    itself; nothing is created here: the nearest existing parent must be a writable folder.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # the default folder interpolates ${hydra:runtime.cwd}
        self._check(config, config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        self._check(config, config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, path: str, key: str) -> None:
        if key == "hydra.run.dir" and "output" in config and config.output == path:
            key = "output"  # predict.py's folder: the key its user sets
        reason = _unwritable(Path(path).expanduser(), create=False)
        if reason:
            print(f"PreflightError: {key}={path} cannot be written: {reason}: choose another {key}", file=sys.stderr)
            sys.exit(1)
