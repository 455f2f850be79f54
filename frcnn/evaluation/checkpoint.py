"""Reading a checkpoint for evaluation, with one-line errors for files that are not ours.

Accepted: a checkpoint of the training app (``frcnn.lit.module.DetectionModule``: Lightning's
``state_dict`` with ``model.`` keys and ``hyper_parameters`` holding ``cfg``, ``class_names``,
``label_to_category_id``), or a bare ``frcnn.modeling.FasterRCNN`` state dict (what
``python -m frcnn.convert`` writes), which is evaluated with the configured model and data.
Everything is loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from frcnn.data.legacy_config import current_data_config
from frcnn.modeling.config import checkpoint_model_config

# Parameter names only torchvision's FasterRCNN has (ours renames the FPN and RPN head).
_TORCHVISION_MARKERS = ("backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks.", "rpn.head.cls_logits.", "rpn.head.bbox_pred.")
# Parameter names every state dict of ours has.
_OUR_MARKERS = ("backbone.body.", "rpn.head.objectness_logits.", "roi_heads.")


class CheckpointError(Exception):
    """A checkpoint that cannot be evaluated; ``str(error)`` is one line for the user."""


@dataclass
class LoadedCheckpoint:
    """model_state_dict: ``FasterRCNN`` parameters (no ``model.`` prefix); cfg, class_names,
    label_to_category_id: from the app's hyper-parameters, empty/None for a bare state dict."""

    model_state_dict: dict[str, Tensor]
    cfg: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    label_to_category_id: list[int] | dict[int, int] | None = None

    @property
    def is_bare(self) -> bool:
        return not self.cfg


def load_checkpoint(path: str | Path | None) -> LoadedCheckpoint:
    """Load and check ``path``; raises :class:`CheckpointError` saying what is wrong."""
    if path is None or str(path) == "":
        raise CheckpointError("no checkpoint given: pass ckpt=PATH")
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file: give its file (e.g. {path / 'last.ckpt'})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Weights only load failed" in str(error):
            raise CheckpointError(
                f"{path} holds Python objects that weights_only=True refuses to load: not a checkpoint of this app"
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({_reason(error)})") from None
    except Exception as error:  # a truncated zip fails in many places: reader, unpickler, storages
        raise CheckpointError(f"{path} is truncated or not a PyTorch checkpoint ({_reason(error)})") from None

    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint of this app")
    if "state_dict" in checkpoint and isinstance(checkpoint.get("hyper_parameters"), dict):
        hparams = checkpoint["hyper_parameters"]
        if "cfg" not in hparams or "model" not in hparams.get("cfg", {}):
            raise CheckpointError(f"{path} is a Lightning checkpoint, but not of this app (no cfg.model in hyper_parameters)")
        state_dict = {
            key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items() if key.startswith("model.")
        }
        if not state_dict:
            raise CheckpointError(f"{path} is a Lightning checkpoint without model.* weights")
        # Checkpoints written before the data and model configs had one node per stage / source
        # are translated to today's configs.
        cfg = dict(hparams["cfg"])
        try:
            cfg["model"] = checkpoint_model_config(cfg["model"])
            if "data" in cfg:
                cfg["data"] = current_data_config(cfg["data"])
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from None
        return LoadedCheckpoint(
            model_state_dict=state_dict,
            cfg=cfg,
            class_names=hparams.get("class_names"),
            label_to_category_id=hparams.get("label_to_category_id"),
        )
    if checkpoint and all(isinstance(value, Tensor) for value in checkpoint.values()):
        keys = list(checkpoint)
        if any(key.startswith(_TORCHVISION_MARKERS) for key in keys):
            raise CheckpointError(
                f"{path} is a torchvision FasterRCNN state dict: convert it first with "
                f"`python -m frcnn.convert {path} frcnn_weights.pt --coco-to-80`, then evaluate ckpt=frcnn_weights.pt"
            )
        if all(any(key.startswith(marker) for key in keys) for marker in _OUR_MARKERS):
            return LoadedCheckpoint(model_state_dict=dict(checkpoint))
        raise CheckpointError(f"{path} is a state dict, but not of frcnn's FasterRCNN (e.g. {keys[0]!r})")
    raise CheckpointError(f"{path} is not a checkpoint of this app (top-level keys: {sorted(map(str, checkpoint))[:5]})")


def _reason(error: BaseException) -> str:
    """The first line of an exception's message, for a one-line report."""
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
