"""frcnn.modeling.backbone: ResNet-18/34/50/101 bodies + FPN against torchvision (freezing, weights files, features)."""

import pytest
import torch
import torchvision.models
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d

from frcnn.convert import from_torchvision
from frcnn.modeling.backbone import ResNet, load_backbone_weights, resnet_fpn


def test_trainable_layers_freeze_like_torchvision():
    def trainable(body):
        return {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}

    assert trainable(ResNet(trainable_layers=3)) == {"layer2", "layer3", "layer4"}
    assert trainable(ResNet(trainable_layers=0)) == set()
    assert trainable(ResNet(trainable_layers=5)) == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"} - {"bn1"}
    assert trainable(ResNet(norm="bn", trainable_layers=5)) == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}
    with pytest.raises(ValueError, match="norm="):
        ResNet(norm="group")


def test_backbone_weights_load_from_a_torchvision_file(tmp_path):
    from torchvision.models import resnet50

    reference = resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    body = ResNet()
    load_backbone_weights(body, str(path))
    assert torch.equal(body.layer3[2].conv2.weight, reference.layer3[2].conv2.weight)
    assert torch.equal(body.bn1.running_var, reference.bn1.running_var)
    with pytest.raises(ValueError, match="not a torchvision resnet50 state dict"):
        torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
        load_backbone_weights(body, str(tmp_path / "other.pth"))


def test_named_backbone_weights_offline_give_one_line(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    with pytest.raises(RuntimeError, match=r"could not download backbone weights IMAGENET1K_V1 .*model.backbone.weights=/path") as error:
        load_backbone_weights(ResNet(), "IMAGENET1K_V1")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="neither a file nor one of"):
        load_backbone_weights(ResNet(), "no_such_weights")


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = ResNet(norm="frozen_bn", trainable_layers=2)
    checkpointed = ResNet(norm="frozen_bn", trainable_layers=2, grad_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    images = torch.randn(1, 3, 64, 64)
    for body in (plain, checkpointed):
        sum(feature.sum() for feature in body(images)).backward()
    torch.testing.assert_close(checkpointed.layer3[0].conv1.weight.grad, plain.layer3[0].conv1.weight.grad)


@pytest.mark.parametrize(("depth", "trainable_layers"), [(101, 3), (101, 5), (18, 5), (34, 3)])
def test_resnet_fpn_features_equal_torchvisions(tmp_path, depth, trainable_layers):
    torch.manual_seed(0)
    imagenet = getattr(torchvision.models, f"resnet{depth}")()
    with torch.no_grad():  # BN statistics other than the identity, so folding them is exercised
        for name, tensor in imagenet.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                tensor.normal_(0.0, 0.1)
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(imagenet.state_dict(), path)

    reference = resnet_fpn_backbone(
        backbone_name=f"resnet{depth}", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=trainable_layers
    )
    body = {k: v for k, v in imagenet.state_dict().items() if not k.startswith("fc.") and "num_batches" not in k}
    reference.body.load_state_dict(body)
    ours = resnet_fpn(depth, weights=str(path), trainable_layers=trainable_layers)
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
