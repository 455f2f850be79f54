"""Frozen batch norm folded into its convolution: same outputs as conv → torchvision's
FrozenBatchNorm2d, torchvision's state-dict keys, and a fold that follows the weights."""

import torch
import torchvision
from torch import nn

from frcnn.modeling import FasterRCNN
from frcnn.modeling.backbone import ResNet
from frcnn.modeling.norm import ConvNorm, FrozenBatchNorm2d, conv_norm


def random_pair(trainable: bool, generator: torch.Generator) -> tuple[nn.Conv2d, FrozenBatchNorm2d]:
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False).requires_grad_(trainable)
    norm = FrozenBatchNorm2d(16)
    with torch.no_grad():
        conv.weight.normal_(generator=generator)
        norm.weight.uniform_(0.5, 2.0, generator=generator)
        norm.bias.normal_(generator=generator)
        norm.running_mean.normal_(generator=generator)
        norm.running_var.uniform_(0.5, 2.0, generator=generator)
    return conv, norm


def reference(conv: nn.Conv2d, norm: FrozenBatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    original = torchvision.ops.FrozenBatchNorm2d(16)
    original.load_state_dict(norm.state_dict())
    return original(conv(x))


def test_folded_equals_conv_then_frozen_bn_and_follows_new_weights():
    generator = torch.Generator().manual_seed(0)
    conv, norm = random_pair(trainable=False, generator=generator)
    x = torch.randn(2, 8, 9, 11, generator=generator)
    torch.testing.assert_close(conv_norm(conv, norm, x), reference(conv, norm, x), rtol=1e-5, atol=1e-5)
    first_fold = norm.folded_conv_params(conv)[0]
    assert norm.folded_conv_params(conv)[0] is first_fold, "folded once, then cached"

    new_conv, new_norm = random_pair(trainable=False, generator=generator)
    conv.load_state_dict(new_conv.state_dict())
    norm.load_state_dict(new_norm.state_dict())
    torch.testing.assert_close(conv_norm(conv, norm, x), reference(new_conv, new_norm, x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        norm.running_var.mul_(4)  # any in-place change refreshes the fold
    torch.testing.assert_close(conv_norm(conv, norm, x), reference(conv, norm, x), rtol=1e-5, atol=1e-5)


def test_trainable_conv_gets_the_same_gradient():
    generator = torch.Generator().manual_seed(1)
    conv, norm = random_pair(trainable=True, generator=generator)
    x = torch.randn(2, 8, 9, 11, generator=generator, requires_grad=True)
    ours = conv_norm(conv, norm, x)
    grads = torch.autograd.grad(ours.square().sum(), (x, conv.weight))
    expected = reference(conv, norm, x)
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, conv.weight))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # inference folds the trainable layer too, and follows its updates
        torch.testing.assert_close(conv_norm(conv, norm, x), reference(conv, norm, x), rtol=1e-5, atol=1e-5)
        conv.weight.sub_(0.1 * grads[1])  # an optimizer step
        torch.testing.assert_close(conv_norm(conv, norm, x), reference(conv, norm, x), rtol=1e-5, atol=1e-5)


def test_fold_made_under_inference_mode_serves_a_training_step():
    generator = torch.Generator().manual_seed(2)
    conv, norm = random_pair(trainable=False, generator=generator)
    x = torch.randn(1, 8, 6, 6, generator=generator)
    with torch.inference_mode():
        conv_norm(conv, norm, x)  # validation fills the cache
    x.requires_grad_(True)
    conv_norm(conv, norm, x).sum().backward()  # the conv saves the cached weight for backward
    assert x.grad is not None


def test_backbone_keeps_torchvision_keys_and_round_trips_after_folding():
    body = ResNet(trainable_layers=2)
    assert isinstance(body.layer1[0].downsample, ConvNorm)
    torchvision_keys = set(torchvision.models.resnet50(norm_layer=torchvision.ops.FrozenBatchNorm2d).state_dict())
    assert set(body.state_dict()) == torchvision_keys - {"fc.weight", "fc.bias"}

    model = FasterRCNN.r50_fpn(num_classes=3, min_size=64, max_size=64).eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        model.backbone(images)  # folds the frozen layers
        for name, value in model.state_dict().items():
            if name.endswith("running_var"):
                value.uniform_(0.5, 1.5)
        expected = model.backbone(images)
    saved = {name: value.clone() for name, value in model.state_dict().items()}
    restored = FasterRCNN.r50_fpn(num_classes=3, min_size=64, max_size=64).eval()
    with torch.no_grad():
        restored.backbone(images)  # a fold of other weights, replaced on load
    restored.load_state_dict(saved, strict=True)
    with torch.no_grad():
        actual = restored.backbone(images)
    assert saved.keys() == model.state_dict().keys()
    for exp, act in zip(expected, actual):
        assert torch.equal(exp, act)
