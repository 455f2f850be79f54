"""The one reader of checkpoints and weight files, and the builder of a model from a config.

Read by :func:`load_checkpoint` (a path) and :func:`read_weights` (a path or a torchvision
weights entry name), each into a :class:`LoadedCheckpoint`:

- a checkpoint of the training app (``frcnn.lit.module.DetectionModule``: Lightning's
  ``state_dict`` with ``model.`` keys, ``hyper_parameters`` holding ``cfg``, ``class_names``,
  ``label_to_category_id``); configs of older versions are translated to today's;
- a bare ``frcnn.modeling.FasterRCNN`` state dict (``python -m frcnn.convert``, 91 rows, or 81
  with ``--coco-to-80``);
- a torchvision ``FasterRCNN`` state dict as downloaded (``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``),
  renamed on the fly by :func:`frcnn.convert.from_torchvision` (91 rows by COCO category id);
- (``read_weights`` only) a torchvision weights entry, ``FasterRCNN_ResNet50_FPN_Weights.COCO_V1``,
  downloaded into torch.hub's cache.

Everything is loaded with ``torch.load(..., weights_only=True)``; every refusal is a
:class:`CheckpointError` whose message is one line for the user.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from frcnn.convert import from_torchvision
from frcnn.data.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from frcnn.data.legacy_config import current_data_config
from frcnn.modeling.config import INITIALISATION_KEYS, checkpoint_model_config, r50_fpn_config

__all__ = [
    "CheckpointError",
    "LoadedCheckpoint",
    "build_model",
    "coco_layout",
    "instantiate_model",
    "load_checkpoint",
    "match_rows",
    "predictor_rows",
    "preview_names",
    "read_weights",
]

log = logging.getLogger(__name__)

# Parameter names only torchvision's FasterRCNN has (ours renames the FPN and RPN head).
_TORCHVISION_MARKERS = ("backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks.", "rpn.head.cls_logits.", "rpn.head.bbox_pred.")
# Parameter names every state dict of ours has.
_OUR_MARKERS = ("backbone.body.", "rpn.head.objectness_logits.", "roi_heads.")
PREDICTOR = "roi_heads.box_predictor."
CLS_SCORE = f"{PREDICTOR}cls_score.weight"
GAP_NAME = "N/A"  # torchvision's name for the ten unused COCO category ids


class CheckpointError(Exception):
    """A checkpoint or weights file that cannot be used; ``str(error)`` is one line for the user."""


@dataclass
class LoadedCheckpoint:
    """model_state_dict: ``FasterRCNN`` parameters with our names (no ``model.`` prefix);
    cfg, class_names, label_to_category_id: from the app's hyper-parameters (empty/None for a
    bare state dict); kind: ``app``, ``frcnn`` (a bare state dict of ours) or ``torchvision``
    (converted while loading); source: the path or entry name it was read from."""

    model_state_dict: dict[str, Tensor]
    cfg: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    label_to_category_id: list[int] | dict[int, int] | None = None
    kind: str = "app"
    source: str = ""

    @property
    def is_bare(self) -> bool:
        return not self.cfg

    @property
    def num_classes(self) -> int:
        """Rows of the box predictor's class scores (background included)."""
        weight = self.model_state_dict.get(CLS_SCORE)
        if weight is None:
            raise CheckpointError(f"{self.source}: the state dict has no {CLS_SCORE}: not a FasterRCNN")
        return int(weight.shape[0])

    def row_names(self) -> list[str] | None:
        """The class name of each box-predictor row (row 0 background; torchvision's unused
        category ids ``"N/A"``), or None when the file does not say (a bare file of another size)."""
        if self.class_names is not None:
            return list(self.class_names)
        layout = coco_layout(self.num_classes)
        return layout[0] if layout else None


def coco_layout(num_rows: int) -> tuple[list[str], list[int]] | None:
    """(name per row, COCO category id per row) of a COCO predictor: 81 rows (background + the
    80 classes, ``--coco-to-80``) or torchvision's 91 (row = category id, gaps ``"N/A"``); else None."""
    if num_rows == len(COCO_CLASSES) + 1:
        return ["background", *COCO_CLASSES], [0, *COCO_CATEGORY_IDS]
    if num_rows == max(COCO_CATEGORY_IDS) + 1:
        names = [GAP_NAME] * num_rows
        names[0] = "background"
        for name, category_id in zip(COCO_CLASSES, COCO_CATEGORY_IDS):
            names[category_id] = name
        return names, list(range(num_rows))
    return None


def load_checkpoint(path: str | Path | None) -> LoadedCheckpoint:
    """Load and check the file at ``path`` (see the module docstring); raises :class:`CheckpointError`."""
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
    return _parse(checkpoint, str(path))


def read_weights(source: str | Path) -> LoadedCheckpoint:
    """``model.weights``: a file :func:`load_checkpoint` reads, or a torchvision weights entry
    (``FasterRCNN_ResNet50_FPN_Weights.COCO_V1``) fetched into torch.hub's cache."""
    source = str(source)
    if Path(source).expanduser().is_file() or "." not in source or "/" in source:
        return load_checkpoint(source)
    return _parse(_download_entry(source), source)


def _download_entry(name: str) -> dict[str, Tensor]:
    import torchvision.models

    try:
        entry = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise CheckpointError(
            f"{name} is neither a file nor a torchvision weights entry (e.g. FasterRCNN_ResNet50_FPN_Weights.COCO_V1)"
        ) from None
    try:
        return torch.hub.load_state_dict_from_url(entry.url, map_location="cpu", progress=False, weights_only=True)
    except OSError as error:  # URLError, socket and DNS failures are all OSErrors
        raise CheckpointError(
            f"could not download {name} ({error.__class__.__name__}): fetch {entry.url} on a machine with "
            f"internet and pass its path, model.weights=/path/{entry.url.rsplit('/', 1)[-1]}"
        ) from None


def _parse(checkpoint: Any, source: str) -> LoadedCheckpoint:
    """A loaded object as a :class:`LoadedCheckpoint`, or the one-line reason it is none."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{source} holds a {type(checkpoint).__name__}, not a checkpoint of this app")
    if "state_dict" in checkpoint and isinstance(checkpoint.get("hyper_parameters"), dict):
        return _parse_app(checkpoint, source)
    if checkpoint and all(isinstance(value, Tensor) for value in checkpoint.values()):
        keys = list(checkpoint)
        if any(key.startswith(_TORCHVISION_MARKERS) for key in keys):
            return LoadedCheckpoint(from_torchvision(dict(checkpoint)), kind="torchvision", source=source)
        if all(any(key.startswith(marker) for key in keys) for marker in _OUR_MARKERS):
            return LoadedCheckpoint(dict(checkpoint), kind="frcnn", source=source)
        raise CheckpointError(f"{source} is a state dict, but not of frcnn's FasterRCNN nor torchvision's (e.g. {keys[0]!r})")
    raise CheckpointError(f"{source} is not a checkpoint of this app (top-level keys: {sorted(map(str, checkpoint))[:5]})")


def _parse_app(checkpoint: dict[str, Any], source: str) -> LoadedCheckpoint:
    hparams = checkpoint["hyper_parameters"]
    if "cfg" not in hparams or "model" not in hparams.get("cfg", {}):
        raise CheckpointError(f"{source} is a Lightning checkpoint, but not of this app (no cfg.model in hyper_parameters)")
    state_dict = {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items() if key.startswith("model.")}
    if not state_dict:
        raise CheckpointError(f"{source} is a Lightning checkpoint without model.* weights")
    # Checkpoints written before the data and model configs had one node per stage / source
    # are translated to today's configs.
    cfg = dict(hparams["cfg"])
    try:
        cfg["model"] = checkpoint_model_config(cfg["model"])
        if "data" in cfg:
            cfg["data"] = current_data_config(cfg["data"])
    except ValueError as error:
        raise CheckpointError(f"{source}: {error}") from None
    return LoadedCheckpoint(
        model_state_dict=state_dict,
        cfg=cfg,
        class_names=hparams.get("class_names"),
        label_to_category_id=hparams.get("label_to_category_id"),
        source=source,
    )


def instantiate_model(model_cfg: Mapping[str, Any]) -> nn.Module:
    """The ``FasterRCNN`` of a ``model`` config node. Its initialisation keys (``weights``,
    ``weights_classes``: what ``train.py`` starts the model from, :mod:`frcnn.initialise`) are
    not the model's options; with ``weights`` set, the backbone's ImageNet file is not loaded
    (the whole-detector file replaces it), and one line says so. A ``DictConfig`` is resolved first."""
    model_cfg = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    weights = model_cfg.get("weights")
    for key in INITIALISATION_KEYS:
        model_cfg.pop(key, None)
    backbone = model_cfg.get("backbone")
    if weights and isinstance(backbone, Mapping) and backbone.get("weights"):
        log.info("model.weights=%s replaces model.backbone.weights=%s: the backbone file is not loaded", weights, backbone["weights"])
        model_cfg["backbone"] = dict(backbone, weights=None)
    return hydra.utils.instantiate(model_cfg, _convert_="all")


def build_model(
    checkpoint: LoadedCheckpoint, model_cfg: Mapping[str, Any] | None = None, class_names: Sequence[str] | None = None
) -> nn.Module:
    """A ``FasterRCNN`` with the checkpoint's weights, in eval mode.

    Args:
        model_cfg: the model's Hydra config (``_target_`` and options); None: the checkpoint's
            own, or for a bare state dict the default model with as many classes as its box
            predictor. Weights files named in it (``weights``, ``backbone.weights``) are not
            loaded: the checkpoint's replace them.
        class_names: the data's classes; a bare COCO file with other rows (torchvision's 91)
            keeps the rows of these classes, found by name (each must be there).
    """
    if model_cfg is None and checkpoint.is_bare:
        model_cfg = r50_fpn_config(len(class_names) if class_names else checkpoint.num_classes, resize=False)
    elif model_cfg is None:
        model_cfg = checkpoint.cfg["model"]
    try:
        model_cfg = checkpoint_model_config(model_cfg)
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    model = instantiate_model(model_cfg)
    state_dict = checkpoint.model_state_dict
    if class_names is not None and checkpoint.is_bare and checkpoint.num_classes != len(class_names):
        state_dict = _rows_of(checkpoint, class_names)
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shapes differ: torch lists them all, one per line after a heading
        first = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), _reason(error))
        raise CheckpointError(f"the checkpoint's weights do not fit the model config: {first}") from None
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise CheckpointError(
            f"the checkpoint's weights do not fit the model config: {len(missing)} missing and "
            f"{len(unexpected)} unexpected parameters (e.g. {example!r})"
        )
    return model.eval()


def match_rows(source_names: Sequence[str], class_names: Sequence[str]) -> dict[int, int]:
    """label -> source row for background (0 -> 0) and every class whose name a source row has
    (case-insensitive, surrounding spaces ignored).

    Both lists are indexed by row/label with background first; torchvision's unused COCO ids
    (``"N/A"``) match nothing.
    """
    rows: dict[str, int] = {}
    for row, name in enumerate(source_names):
        if row and _name_key(name) not in ("", _name_key(GAP_NAME)):
            rows.setdefault(_name_key(name), row)
    matches = {0: 0}
    for label, name in enumerate(class_names):
        if label and _name_key(name) in rows:
            matches[label] = rows[_name_key(name)]
    return matches


def _name_key(name: str) -> str:
    return str(name).strip().casefold()


def predictor_rows(rows: Tensor, per_class: int) -> Tensor:
    """Indices of a predictor layer's rows for classes ``rows [R]``: ``per_class`` consecutive
    rows each (``cls_score`` 1, ``bbox_pred`` 4) -> ``[R * per_class]``."""
    return (rows[:, None] * per_class + torch.arange(per_class)).flatten()


def _rows_of(checkpoint: LoadedCheckpoint, class_names: Sequence[str]) -> dict[str, Tensor]:
    """The checkpoint's state dict with the box predictor's rows of ``class_names``, by name."""
    source_names = checkpoint.row_names()
    matches = match_rows(source_names, class_names) if source_names else {0: 0}
    absent = [name for label, name in enumerate(class_names) if label not in matches]
    if absent:
        raise CheckpointError(
            f"{checkpoint.source} has {checkpoint.num_classes} classes and not the data's {preview_names(absent)}: "
            f"fine-tune it onto them, python train.py model.weights={checkpoint.source} ..."
        )
    rows = torch.tensor(list(matches.values()))
    state_dict = dict(checkpoint.model_state_dict)
    for layer, per_class in (("cls_score", 1), ("bbox_pred", 4)):
        for suffix in ("weight", "bias"):
            name = f"{PREDICTOR}{layer}.{suffix}"
            state_dict[name] = state_dict[name][predictor_rows(rows, per_class)]
    return state_dict


def preview_names(names: Sequence[str], limit: int = 6) -> str:
    """At most ``limit`` names, and how many there are when more."""
    shown = ", ".join(map(str, names[:limit]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _reason(error: BaseException) -> str:
    """The first line of an exception's message, for a one-line report."""
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
