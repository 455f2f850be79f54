"""Start a model from a trained detector (``model.weights``): fine-tuning, not a resume.

Every tensor of the source must have this model's name and shape (else one line names the
first that differs and the config that fits the file). The box predictor is the exception:
its rows are per class (``cls_score`` one row, ``bbox_pred`` four per class), and each data
class whose name is a source class's (case-insensitive, surrounding spaces ignored) takes
that class's rows; background takes the source's background row; the other classes keep the
rows a new ``BoxPredictor`` starts with (``nn.Linear``'s default initialisation, as
torchvision's ``FastRCNNPredictor``). ``weights_classes=reinit``: every row starts new.

Step, optimizer, schedule and data position are untouched: they start fresh (``ckpt_path`` resumes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from frcnn.checkpoint import (
    GAP_NAME,
    PREDICTOR,
    CheckpointError,
    LoadedCheckpoint,
    match_rows,
    predictor_rows,
    preview_names,
    read_weights,
)

__all__ = ["LoadTable", "WEIGHTS_CLASSES", "initialise", "initialise_from"]

log = logging.getLogger(__name__)

WEIGHTS_CLASSES = ("by_name", "reinit")
_COUNTERS = "num_batches_tracked"  # batch norm's step counter: nothing a frozen or evaluated norm reads
_SOURCE_KINDS = {"app": "checkpoint of this app", "frcnn": "frcnn state dict", "torchvision": "torchvision state dict"}


@dataclass
class LoadTable:
    """What ``initialise_from`` did: ``copied`` (data class, source class) rows, background
    first; ``new`` data classes whose rows start new; ``skipped`` (tensor, why)."""

    source: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    copied: list[tuple[str, str]] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The table, one line per row, as the log shows it."""
        stages: dict[str, int] = {}
        for name in self.loaded:
            stage = ".".join(name.split(".")[:2])
            stages[stage] = stages.get(stage, 0) + 1
        per_stage = ", ".join(f"{stage} {count}" for stage, count in stages.items())
        copied = ", ".join(name if name == source else f"{name} <- {source}" for name, source in self.copied)
        skipped = "; ".join(f"{name} ({why})" for name, why in self.skipped)
        return [
            f"model.weights: {_SOURCE_KINDS.get(self.kind, self.kind)} {self.source}",
            f"  tensors loaded   {len(self.loaded):4d}  {per_stage}",
            f"  rows copied      {len(self.copied):4d}  {copied or '-'}",
            f"  rows new         {len(self.new):4d}  {', '.join(self.new) or '-'}",
            f"  tensors skipped  {len(self.skipped):4d}  {skipped or '-'}",
        ]


def initialise(model: nn.Module, weights: str, class_names: Sequence[str], weights_classes: str = "by_name") -> LoadTable:
    """Read ``weights`` (:func:`frcnn.checkpoint.read_weights`), start ``model`` from it and log the table."""
    table = initialise_from(model, read_weights(weights), class_names, weights_classes)
    for line in table.lines():
        log.info(line)
    return table


def initialise_from(
    model: nn.Module, source: LoadedCheckpoint, class_names: Sequence[str], weights_classes: str = "by_name"
) -> LoadTable:
    """Copy ``source``'s tensors into ``model`` (see the module docstring); returns the table.

    Args:
        class_names: the data's classes, index = label, background first.
        weights_classes: ``by_name`` (rows copied by class name) or ``reinit`` (all rows new).

    Raises:
        CheckpointError: a tensor of another name or shape (another architecture), or an
            unknown ``weights_classes``; one line.
    """
    if weights_classes not in WEIGHTS_CLASSES:
        raise CheckpointError(f"model.weights_classes={weights_classes!r}: use one of {', '.join(WEIGHTS_CLASSES)}")
    found, state = source.model_state_dict, model.state_dict()
    table = LoadTable(source.source, source.kind)
    _check_architecture(found, state, source.source, table)
    for name in state:
        if not name.startswith(PREDICTOR) and name in found:
            state[name] = found[name]
            table.loaded.append(name)

    matches = _rows_to_copy(source, class_names, weights_classes)
    labels = torch.tensor(list(matches), dtype=torch.int64)
    rows = torch.tensor(list(matches.values()), dtype=torch.int64)
    source_names = source.row_names() or [str(row) for row in range(source.num_classes)]
    for suffix in ("weight", "bias"):
        for layer, per_class in (("cls_score", 1), ("bbox_pred", 4)):
            name = f"{PREDICTOR}{layer}.{suffix}"
            state[name][predictor_rows(labels, per_class)] = found[name][predictor_rows(rows, per_class)]
    table.copied = [(class_names[label], source_names[row]) for label, row in matches.items()]
    table.new = [name for label, name in enumerate(class_names) if label not in matches]
    used = set(matches.values())
    unused = sum(1 for row, name in enumerate(source_names) if row not in used and name != GAP_NAME)
    if weights_classes == "reinit":
        table.skipped.append((f"{PREDICTOR}*", "weights_classes=reinit: every class row starts new"))
    elif unused:
        table.skipped.append((f"{PREDICTOR}*", f"rows of {unused} source classes the data does not have"))
    if weights_classes == "by_name" and len(matches) == 1 and len(class_names) > 1:
        log.warning(
            "model.weights: no class of the data (%s) is a class of %s (%s): every class starts new, background copied",
            preview_names(class_names[1:]), source.source, preview_names([n for n in source_names[1:] if n != GAP_NAME]),
        )
    model.load_state_dict(state)
    return table


def _rows_to_copy(source: LoadedCheckpoint, class_names: Sequence[str], weights_classes: str) -> dict[int, int]:
    """label -> source row (see ``match_rows``); a source whose names are unknown gives its rows
    by position when it has as many as the data, else none."""
    if weights_classes == "reinit":
        return {}
    source_names = source.row_names()
    if source_names is not None:
        return match_rows(source_names, class_names)
    if source.num_classes == len(class_names):
        log.warning("model.weights: %s does not name its classes: its %d rows are copied by position", source.source, source.num_classes)
        return dict(enumerate(range(len(class_names))))
    log.warning("model.weights: %s does not name its %d classes: every class starts new", source.source, source.num_classes)
    return {}


def _check_architecture(found: dict[str, Tensor], state: dict[str, Tensor], source: str, table: LoadTable) -> None:
    """Raise on the first tensor whose name or shape differs (the predictor's class rows may
    differ in number); batch-norm step counters only one side has are skipped."""
    problem = None
    for name, tensor in state.items():
        if name.endswith(_COUNTERS):
            continue
        if name not in found:
            problem = f"{name} is in this model, not in the weights"
        elif name.startswith(PREDICTOR) and found[name].shape[1:] != tensor.shape[1:]:
            problem = f"{name} is {list(found[name].shape)} there, {list(tensor.shape)} here"
        elif not name.startswith(PREDICTOR) and found[name].shape != tensor.shape:
            problem = f"{name} is {list(found[name].shape)} there, {list(tensor.shape)} here"
        if problem:
            break
    counters = 0
    for name in found:
        if problem:
            break
        if name not in state:
            if name.endswith(_COUNTERS):
                counters += 1
            else:
                problem = f"{name} is in the weights, not in this model"
    if problem:
        raise CheckpointError(f"model.weights={source} is another architecture: {problem}; {_fitting_config(found)}")
    if counters:
        table.skipped.append((f"*.{_COUNTERS}", f"{counters} batch-norm step counters this model's norm does not keep"))


def _fitting_config(found: dict[str, Tensor]) -> str:
    """The config overrides under which a model has the tensors ``found`` (as far as the file tells)."""
    lateral = found.get("backbone.fpn.lateral_convs.0.weight")
    width = f" model.backbone.out_channels={lateral.shape[0]}" if lateral is not None else ""
    if "backbone.body.layer1.0.conv1.weight" not in found:
        return f"the file's backbone is not a ResNet (a MobileNetV3-FPN file: model=frcnn_mobilenet_v3_large_fpn){width}"
    blocks = 1 + max(int(name.split(".")[3]) for name in found if name.startswith("backbone.body.layer3."))
    bottleneck = "backbone.body.layer1.0.conv3.weight" in found
    depth = ({6: 50, 23: 101} if bottleneck else {2: 18, 6: 34}).get(blocks)
    if depth is None:
        return f"the file's ResNet has {blocks} blocks in layer3, a depth frcnn does not build"
    return f"the file is ResNet-{depth} + FPN: train with model=frcnn_r50_fpn model/backbone=resnet{depth}_fpn{width} (and the source run's other model options)"
