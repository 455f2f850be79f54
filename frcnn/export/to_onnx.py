"""Write a checkpoint's detector as one ONNX file: ``python export.py ckpt=PATH output=model.onnx``.

The file holds the whole detector (``frcnn.export.graph.ExportableDetector``): input
``images`` uint8 ``[B, 3, H, W]`` (B, H, W dynamic; one size per call), outputs ``boxes``
float32 ``[N, 4]`` (xyxy in the input's pixels), ``scores`` ``[N]``, ``labels`` int64 ``[N]``
(1..C-1), ``batch_index`` int64 ``[N]``. Its metadata (``metadata_props``) holds the class
names, the resize and the model's settings as JSON (``frcnn.export.runtime`` reads them).

Exported with ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript, the
default of torch 2.9+), in two graphs (see ``ExportableDetector``) joined by
``onnx.compose.merge_models``; NMS is a custom op (``frcnn.export.nms``) translated to
``NonMaxSuppression``, RoIAlign is torchvision's op translated to ``RoiAlign``.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from frcnn.checkpoint import build_model, load_checkpoint
from frcnn.data.transforms import build_resize
from frcnn.detector import inference_settings
from frcnn.export.graph import ExportableDetector, ResizeSpec
from frcnn.export.onnx_ops import TRANSLATIONS
from frcnn.export.runtime import FORMAT, FORMAT_VERSION, OUTPUT_NAMES

__all__ = ["ExportError", "export_checkpoint", "export_detector"]

OPSET = 18  # Resize with antialias needs 18; RoiAlign's coordinate mode 16
INPUT_NAMES = ["images"]
_INNER_NAMES = ["batch", "size", "orig_size"]  # preprocess → detect


class ExportError(Exception):
    """An export that cannot be done; ``str(error)`` is one line for the user."""


def export_checkpoint(ckpt: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Export what ``predict.py ckpt=...`` runs (an app checkpoint or a converted state dict).

    Raises ``CheckpointError`` for a file that is not a checkpoint and ``ExportError`` for
    an output that cannot be written.
    """
    output = writable_output(output)
    checkpoint = load_checkpoint(ckpt)
    model = build_model(checkpoint)
    resize_cfg, class_names, label_to_category_id = inference_settings(checkpoint, model.num_classes)
    build_resize(**resize_cfg)  # the same error as predict.py for a resize mode it does not know
    settings = {"checkpoint": str(Path(ckpt).expanduser().resolve()), "model": checkpoint.cfg.get("model") or "r50_fpn"}
    return export_detector(model, ResizeSpec(**resize_cfg), class_names, output, label_to_category_id, settings)


def writable_output(output: str | os.PathLike) -> Path:
    """``output`` as a path whose folder exists (created) and can be written, else ``ExportError``."""
    output = Path(output).expanduser()
    if output.is_dir():
        raise ExportError(f"output={output} is a folder: give a file path such as {output / 'model.onnx'}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output.parent):
            pass
    except OSError as error:
        raise ExportError(f"cannot write output={output} ({error.strerror}): give a path in a writable folder") from None
    return output


def export_detector(
    model: nn.Module,
    resize: ResizeSpec,
    class_names: list[str],
    output: Path,
    label_to_category_id: list[int] | dict[int, int] | None = None,
    settings: dict[str, Any] | None = None,
) -> Path:
    """Export ``model`` (a ``FasterRCNN``) with ``resize`` in front to ``output``; see the module docstring."""
    detector = ExportableDetector(model.float().cpu().eval(), resize)
    images = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)  # B > 1, H != W: kept symbolic
    batch, size, orig_size = detector.preprocess(images)
    num_images, height, width = torch.export.Dim("B", min=1), torch.export.Dim("H", min=1), torch.export.Dim("W", min=1)
    divisor = model.transform.size_divisible
    padded_height, padded_width = torch.export.Dim("Hp", min=1), torch.export.Dim("Wp", min=1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on opsets and dynamic shapes
        preprocess = _to_onnx(detector.preprocess, (images,), ({0: num_images, 2: height, 3: width},), INPUT_NAMES, _INNER_NAMES)
        detect = _to_onnx(
            detector.detect,
            (batch, size, orig_size),
            ({0: num_images, 2: divisor * padded_height, 3: divisor * padded_width}, None, None),
            _INNER_NAMES,
            list(OUTPUT_NAMES),
        )
    merged = onnx.compose.merge_models(
        preprocess, detect, io_map=[(name, name) for name in _INNER_NAMES], prefix1="preprocess/", prefix2="detect/"
    )
    for graph_input, name in zip(merged.graph.input, INPUT_NAMES):
        _rename(merged.graph, graph_input.name, name)
    for graph_output, name in zip(merged.graph.output, OUTPUT_NAMES):
        _rename(merged.graph, graph_output.name, name)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "class_names": json.dumps(class_names),
        "label_to_category_id": json.dumps(label_to_category_id),
        "resize": json.dumps(vars(resize)),
        "score_thresh": json.dumps(model.roi_heads.score_thresh),
        "settings": json.dumps(settings or {}, default=str),
    }
    onnx.helper.set_model_props(merged, metadata)
    merged.producer_name = "frcnn"
    onnx.checker.check_model(merged)
    onnx.save(merged, output)
    return output


def _to_onnx(module: nn.Module, args: tuple, dynamic_shapes: tuple, input_names: list[str], output_names: list[str]):
    program = torch.onnx.export(
        module,
        args,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        input_names=input_names,
        output_names=output_names,
        custom_translation_table=TRANSLATIONS,
        opset_version=OPSET,
        optimize=True,
        verbose=False,
    )
    return program.model_proto


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename the tensor ``old`` to ``new`` everywhere in ``graph``."""
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
