"""docs/architecture.md, "How to add a backbone", followed to the letter: a backbone defined here,
one yaml in a copy of conf/, selected with ``model/backbone=tiny``, trains and detects."""

from __future__ import annotations

import shutil
from pathlib import Path

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import Tensor, nn

from frcnn.modeling import FasterRCNN

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


class TinyBackbone(nn.Module):
    """The backbone contract: ``[B, 3, H, W]`` float -> P2-P6 (strides 4-64), ``out_channels`` each."""

    def __init__(self, out_channels: int = 16) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stem = nn.Conv2d(3, out_channels, 3, stride=4, padding=1)
        self.downsample = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) for _ in range(4))

    def forward(self, images: Tensor) -> list[Tensor]:
        features = [self.stem(images)]
        for conv in self.downsample:
            features.append(conv(features[-1]))
        return features


def test_a_new_backbone_is_one_module_and_one_yaml(tmp_path):
    conf = shutil.copytree(CONF_DIR, tmp_path / "conf")
    (conf / "model" / "backbone" / "tiny.yaml").write_text(f"_target_: {__name__}.TinyBackbone\nout_channels: 16\n")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["model/backbone=tiny", "model.num_classes=3", "model.roi_heads.box_head.representation_size=32"])
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    assert isinstance(model, FasterRCNN) and isinstance(model.backbone, TinyBackbone)
    assert model.rpn.head.conv.in_channels == 16 and model.roi_heads.box_head.fc6.in_features == 16 * 7 * 7  # ${...backbone.out_channels}

    torch.manual_seed(0)
    images = [torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)]
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([2])}]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"rpn_cls", "rpn_box", "roi_cls", "roi_box"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.stem.weight.grad is not None
    model.eval()
    with torch.no_grad():
        (detections,) = model(images)
    assert detections["boxes"].shape[1] == 4 and len(detections["boxes"]) == len(detections["scores"])
