"""frcnn.modeling.backbone: ResNet-50/101 bodies + FPN against torchvision's resnet_fpn_backbone."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet101
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d

from frcnn.convert import from_torchvision
from frcnn.modeling.backbone import resnet_fpn


@pytest.mark.parametrize("trainable_layers", [3, 5])
def test_resnet101_fpn_features_equal_torchvisions(tmp_path, trainable_layers):
    torch.manual_seed(0)
    imagenet = resnet101()
    with torch.no_grad():  # BN statistics other than the identity, so folding them is exercised
        for name, tensor in imagenet.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                tensor.normal_(0.0, 0.1)
    path = tmp_path / "resnet101.pth"
    torch.save(imagenet.state_dict(), path)

    reference = resnet_fpn_backbone(
        backbone_name="resnet101", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=trainable_layers
    )
    body = {k: v for k, v in imagenet.state_dict().items() if not k.startswith("fc.") and "num_batches" not in k}
    reference.body.load_state_dict(body)
    ours = resnet_fpn(101, weights=str(path), trainable_layers=trainable_layers)
    converted = _as_ours(reference.state_dict())
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.state_dict().items()}
    ours.load_state_dict({k: v for k, v in converted.items() if k.startswith("fpn.")}, strict=False)  # body: from the file
    assert {k for k, p in ours.named_parameters() if p.requires_grad} == set(
        _as_ours({k: p for k, p in reference.named_parameters() if p.requires_grad})
    )

    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = list(reference.eval()(images).values())
        actual = ours.eval()(images)
    assert len(actual) == len(expected) == 5
    for act, exp in zip(actual, expected):
        torch.testing.assert_close(act, exp, rtol=1e-4, atol=1e-4 * exp.abs().max().item())


def _as_ours(backbone_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision backbone keys → ours (``frcnn.convert`` renames whole-model keys)."""
    return {k.removeprefix("backbone."): v for k, v in from_torchvision({f"backbone.{k}": v for k, v in backbone_state.items()}).items()}
