"""Convert state dicts between torchvision's ``FasterRCNN`` and ours: R50-FPN v1
(``fasterrcnn_resnet50_fpn``) and MobileNetV3-Large FPN (``fasterrcnn_mobilenet_v3_large_fpn``,
``fasterrcnn_mobilenet_v3_large_320_fpn``; build ours with ``model=frcnn_mobilenet_v3_large_fpn``).

Only the FPN and RPN-head parameter names differ; the backbone body and the box head
use torchvision's names already. Both directions are lossless.

torchvision's COCO model has 91 outputs indexed by COCO category id (1–90, with gaps);
``coco_to_80=True`` keeps the 80 real categories in the Hub dataset's order, so the model
predicts our labels 1–80 (``FasterRCNN.r50_fpn(num_classes=81)``).

Command line::

    python -m frcnn.convert fasterrcnn_resnet50_fpn_coco.pth frcnn_coco.pt          # torchvision → ours
    python -m frcnn.convert --coco-to-80 fasterrcnn_resnet50_fpn_coco.pth frcnn_coco80.pt
    python -m frcnn.convert --to-torchvision frcnn_coco.pt fasterrcnn_resnet50_fpn.pth
    python -m frcnn.convert --coco-to-80 fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth frcnn_mobilenet_coco80.pt
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch
from torch import Tensor

from frcnn.data.coco_classes import COCO_CATEGORY_IDS

__all__ = ["COCO_CATEGORY_IDS", "from_torchvision", "to_torchvision"]

# (torchvision pattern, ours) — group 1 is a level index where there is one.
_RENAMES = (
    (r"backbone\.fpn\.inner_blocks\.(\d+)\.0\.", r"backbone.fpn.lateral_convs.\1."),
    (r"backbone\.fpn\.layer_blocks\.(\d+)\.0\.", r"backbone.fpn.output_convs.\1."),
    (r"rpn\.head\.conv\.0\.0\.", r"rpn.head.conv."),
    (r"rpn\.head\.conv\.(?=weight|bias)", r"rpn.head.conv."),  # torchvision < 0.13 checkpoints
    (r"rpn\.head\.cls_logits\.", r"rpn.head.objectness_logits."),
    (r"rpn\.head\.bbox_pred\.", r"rpn.head.anchor_deltas."),
)
_INVERSE = (
    (r"backbone\.fpn\.lateral_convs\.(\d+)\.", r"backbone.fpn.inner_blocks.\1.0."),
    (r"backbone\.fpn\.output_convs\.(\d+)\.", r"backbone.fpn.layer_blocks.\1.0."),
    (r"rpn\.head\.conv\.", r"rpn.head.conv.0.0."),
    (r"rpn\.head\.objectness_logits\.", r"rpn.head.cls_logits."),
    (r"rpn\.head\.anchor_deltas\.", r"rpn.head.bbox_pred."),
)


def _rename(state_dict: dict[str, Tensor], renames: tuple[tuple[str, str], ...]) -> dict[str, Tensor]:
    converted = {}
    for key, value in state_dict.items():
        for pattern, replacement in renames:
            new_key, count = re.subn(f"^{pattern}", replacement, key)
            if count:
                key = new_key
                break
        converted[key] = value
    return converted


def from_torchvision(state_dict: dict[str, Tensor], coco_to_80: bool = False) -> dict[str, Tensor]:
    """torchvision ``FasterRCNN`` state dict (R50-FPN or MobileNetV3-Large FPN) → ``frcnn.modeling.FasterRCNN`` state dict.

    ``coco_to_80``: select the predictor rows of the 80 COCO categories (plus background)
    from torchvision's 91 category-id outputs.
    """
    converted = _rename(state_dict, _RENAMES)
    if coco_to_80:
        rows = torch.tensor((0, *COCO_CATEGORY_IDS))
        box_rows = (rows[:, None] * 4 + torch.arange(4)).flatten()
        for name in ("weight", "bias"):
            converted[f"roi_heads.box_predictor.cls_score.{name}"] = converted[f"roi_heads.box_predictor.cls_score.{name}"][rows]
            converted[f"roi_heads.box_predictor.bbox_pred.{name}"] = converted[f"roi_heads.box_predictor.bbox_pred.{name}"][box_rows]
    return converted


def to_torchvision(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """``frcnn.modeling.FasterRCNN`` state dict → torchvision ``FasterRCNN`` state dict (same architecture)."""
    return _rename(state_dict, _INVERSE)


def _load_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file raises many kinds of errors
        raise SystemExit(f"error: {path} is not a readable PyTorch file ({error.__class__.__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning checkpoint: keep the model's weights only
        state = {k.removeprefix("model."): v for k, v in state.items()}
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise SystemExit(f"error: {path} holds no state dict of tensors")
    return state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="state dict to read (.pth / .pt / Lightning .ckpt)")
    parser.add_argument("target", type=Path, help="where to write the converted state dict")
    parser.add_argument("--to-torchvision", action="store_true", help="convert ours → torchvision")
    parser.add_argument("--coco-to-80", action="store_true", help="keep torchvision's 80 real COCO classes (labels 1-80)")
    args = parser.parse_args(argv)
    state = _load_state_dict(args.source)
    converted = to_torchvision(state) if args.to_torchvision else from_torchvision(state, args.coco_to_80)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(converted, args.target)
    print(f"wrote {len(converted)} tensors to {args.target}", file=sys.stderr)


if __name__ == "__main__":
    main()
