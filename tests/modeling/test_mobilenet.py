"""frcnn.modeling.mobilenet: MobileNetV3-Large + FPN against torchvision's (freezing, ImageNet file, features)."""

import pytest
import torch
from torchvision.models import mobilenet_v3_large
from torchvision.models.detection.backbone_utils import mobilenet_backbone
from torchvision.ops import FrozenBatchNorm2d

from frcnn.convert import from_torchvision
from frcnn.modeling.backbone import load_backbone_weights
from frcnn.modeling.mobilenet import MobileNetV3Large, mobilenet_v3_large_fpn


def _trainable(module: torch.nn.Module) -> set[str]:
    return {name for name, parameter in module.named_parameters() if parameter.requires_grad}


@pytest.mark.parametrize("trainable_layers", [0, 1, 3, 6])
def test_trainable_layers_freeze_like_torchvision(trainable_layers):
    reference = mobilenet_backbone(
        backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=trainable_layers
    )
    assert _trainable(MobileNetV3Large(trainable_layers=trainable_layers)) == _trainable(reference.body)


def test_bad_options_are_one_line():
    with pytest.raises(ValueError, match="norm="):
        MobileNetV3Large(norm="group")
    with pytest.raises(ValueError, match="between 0 and 6"):
        MobileNetV3Large(trainable_layers=7)


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """torchvision's ``mobilenet_v3_large`` ImageNet layout (classifier included), with BN
    statistics other than the identity so that folding them is exercised."""
    torch.manual_seed(0)
    imagenet = mobilenet_v3_large()
    with torch.no_grad():
        for name, tensor in imagenet.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                tensor.normal_(0.0, 0.1)
    path = tmp_path_factory.mktemp("imagenet") / "mobilenet_v3_large.pth"
    torch.save(imagenet.state_dict(), path)
    return path


def test_imagenet_file_loads_and_features_equal_torchvisions(imagenet_file):
    imagenet = torch.load(imagenet_file, weights_only=True)
    reference = mobilenet_backbone(
        backbone_name="mobilenet_v3_large", weights=None, fpn=True, norm_layer=FrozenBatchNorm2d, trainable_layers=3
    )
    body = {k.removeprefix("features."): v for k, v in imagenet.items() if k.startswith("features.") and "num_batches" not in k}
    reference.body.load_state_dict(body)
    ours = mobilenet_v3_large_fpn(weights=str(imagenet_file))
    fpn = from_torchvision({f"backbone.fpn.{k}": v for k, v in reference.fpn.state_dict().items()})
    ours.fpn.load_state_dict({k.removeprefix("backbone.fpn."): v for k, v in fpn.items()})
    assert torch.equal(ours.body[13].block[1][1].running_var, imagenet["features.13.block.1.1.running_var"])

    images = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected = list(reference.eval()(images).values())
        actual = ours.eval()(images)
    assert [tuple(f.shape) for f in actual] == [(2, 256, 3, 4), (2, 256, 3, 4), (2, 256, 2, 2)]  # strides 32, 32, 64
    for act, exp in zip(actual, expected):
        torch.testing.assert_close(act, exp, rtol=1e-4, atol=1e-4 * exp.abs().max().item())


def test_a_file_of_another_model_is_one_line(tmp_path):
    torch.save({"features.0.0.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision mobilenet_v3_large state dict") as error:
        load_backbone_weights(MobileNetV3Large(), str(tmp_path / "other.pth"))
    assert "\n" not in str(error.value)


def test_named_weights_offline_give_one_line_with_the_url(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    with pytest.raises(RuntimeError, match=r"fetch https://download.pytorch.org/models/mobilenet_v3_large-.*\.pth"):
        mobilenet_v3_large_fpn(weights="IMAGENET1K_V1")
