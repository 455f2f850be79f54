"""ResNet-18/34/50/101 + FPN backbones: a body (stem + four stages of basic or bottleneck blocks
→ C2–C5) and a pyramid.

``resnet_fpn`` is what ``conf/model/backbone/*.yaml`` builds. Parameter names equal
torchvision's ``resnet18`` … ``resnet101`` (``conv1``, ``bn1``, ``layer1.0.conv1`` …)
so that ImageNet weights saved by torchvision load as they are. Detection backbones keep
batch-norm statistics frozen (``norm="frozen_bn"``): detection batches are too small
to estimate them, and plain ``BatchNorm2d`` would keep updating running statistics even
where its affine parameters are frozen. Frozen BNs run folded into their convolutions
(``frcnn.modeling.norm``); the state dict keeps torchvision's keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from frcnn.modeling.fpn import FPN
from frcnn.modeling.norm import ConvNorm, FrozenBatchNorm2d, conv_norm

__all__ = ["BackboneWithFPN", "ResNet", "load_backbone_weights", "pretrained_defaults", "resnet_fpn"]

# torchvision's stage names, from the output end backwards: ``trainable_layers = k``
# leaves the last k of them trainable.
_STAGES_FROM_TOP = ("layer4", "layer3", "layer2", "layer1", "conv1")
NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {"frozen_bn": FrozenBatchNorm2d, "bn": nn.BatchNorm2d}
BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: Callable[[int], nn.Module]) -> nn.Module | None:
    """torchvision's ``downsample`` (1×1 conv + norm) where the block changes width or stride, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return ConvNorm(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), norm(out_channels))


class BasicBlock(nn.Module):
    """3×3 (carries the stride) → 3×3, plus a shortcut: ResNet-18/34's block."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, width, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(conv_norm(self.conv1, self.bn1, x))
        return self.relu(conv_norm(self.conv2, self.bn2, out) + identity)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carries the stride, ResNet v1.5) → 1×1 expand, plus a shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(conv_norm(self.conv1, self.bn1, x))
        out = self.relu(conv_norm(self.conv2, self.bn2, out))
        return self.relu(conv_norm(self.conv3, self.bn3, out) + identity)


class ResNet(nn.Module):
    """ResNet-18, -34, -50 or -101 without its classifier; ``forward`` returns the outputs of
    ``layer1``–``layer4``.

    Args:
        depth: 18 or 34 (basic blocks), 50 or 101 (bottlenecks).
        norm: ``"frozen_bn"`` (statistics and affine fixed) or ``"bn"`` (trainable BatchNorm2d).
        trainable_layers: how many stages, counted from ``layer4`` back to the stem, are
            trained (0–5, torchvision's convention; 3 trains layer2–layer4).
        grad_checkpointing: recompute layer3 and layer4 in the backward pass instead of
            storing their activations (less memory, about a third more backbone compute).

    Shapes: images ``[N, 3, H, W]`` → C2 ``[N, c, H/4, W/4]``, C3 ``[N, 2c, H/8, W/8]``,
    C4 ``[N, 4c, H/16, W/16]``, C5 ``[N, 8c, H/32, W/32]`` (sizes rounded up; ``out_channels``:
    c = 64 for basic blocks, 256 for bottlenecks).
    """

    # How torchvision's ImageNet state dict holds this body: its classifier, dropped on loading.
    imagenet_prefix, imagenet_head = "", "fc."

    def __init__(
        self, depth: int = 50, norm: str = "frozen_bn", trainable_layers: int = 3, grad_checkpointing: bool = False
    ) -> None:
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"depth={depth} is not supported: use one of {sorted(BLOCKS_PER_STAGE)}")
        if norm not in NORM_LAYERS:
            raise ValueError(f"norm={norm!r} is not supported: use one of {sorted(NORM_LAYERS)}")
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"trainable_layers={trainable_layers} must be between 0 and 5")
        norm_layer = NORM_LAYERS[norm]
        self.depth = depth
        self.torchvision_name = f"resnet{depth}"
        self.grad_checkpointing = grad_checkpointing
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        block_type = BasicBlock if depth < 50 else Bottleneck
        self.out_channels = tuple(width * block_type.expansion for width in (64, 128, 256, 512))
        in_channels = 64
        stages = zip((64, 128, 256, 512), BLOCKS_PER_STAGE[depth], (1, 2, 2, 2))
        for index, (width, blocks, stride) in enumerate(stages, 1):
            layers = []
            for block in range(blocks):
                layers.append(block_type(in_channels, width, stride if block == 0 else 1, norm_layer))
                in_channels = width * block_type.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self._init_weights()
        self._freeze(trainable_layers)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _freeze(self, trainable_layers: int) -> None:
        trainable = list(_STAGES_FROM_TOP[:trainable_layers])
        if trainable_layers == 5:
            trainable.append("bn1")
        for name, parameter in self.named_parameters():
            if not name.startswith(tuple(trainable)):
                parameter.requires_grad_(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, images)))
        features = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            stage = getattr(self, name)
            if self.grad_checkpointing and name in ("layer3", "layer4") and torch.is_grad_enabled():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
            features.append(x)
        return features


class BackboneWithFPN(nn.Module):
    """A body + FPN: images ``[B, 3, H, W]`` → the body's levels (C2–C5 for a ResNet) through the
    FPN, plus the max-pool level (P2–P6), ``out_channels`` each."""

    def __init__(self, body: nn.Module, fpn: FPN, out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = fpn
        self.out_channels = out_channels

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.fpn(self.body(images))


def pretrained_defaults(pretrained: bool) -> dict[str, str | int]:
    """``norm`` and ``trainable_layers`` for a body with or without pretrained weights
    (torchvision's ``fasterrcnn_resnet50_fpn`` rule): frozen BN and layer2–layer4 trained on
    ImageNet weights; every layer trained, with batch statistics, from a random init (frozen
    random layers would never learn)."""
    return {"norm": "frozen_bn", "trainable_layers": 3} if pretrained else {"norm": "bn", "trainable_layers": 5}


def resnet_fpn(
    depth: int = 50,
    *,
    weights: str | None = None,
    norm: str | None = None,
    trainable_layers: int | None = None,
    grad_checkpointing: bool = False,
    out_channels: int = 256,
) -> BackboneWithFPN:
    """ResNet-``depth`` + FPN with ``out_channels`` per level (torchvision's ``resnet_fpn_backbone``).

    ``weights``: ImageNet weights for the body, see ``load_backbone_weights``; None: random init.
    ``norm``, ``trainable_layers``: None takes ``pretrained_defaults(weights given)``.
    """
    defaults = pretrained_defaults(bool(weights))
    norm = defaults["norm"] if norm is None else norm
    trainable_layers = defaults["trainable_layers"] if trainable_layers is None else trainable_layers
    body = ResNet(depth, norm, trainable_layers, grad_checkpointing)
    if weights:
        load_backbone_weights(body, weights)
    return BackboneWithFPN(body, FPN(body.out_channels, out_channels), out_channels)


def load_backbone_weights(body: nn.Module, weights: str) -> None:
    """Load ImageNet weights into ``body`` from a state-dict file of torchvision's ``body.torchvision_name``
    classifier (``resnet50``, ``resnet101``, ``mobilenet_v3_large``).

    ``weights`` is a file path, or the name of an entry of torchvision's weights enum for that model
    (``ResNet50_Weights``: ``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, ``"DEFAULT"``), which needs a download.
    The body declares where its keys sit in the classifier's state dict: ``imagenet_prefix`` is
    stripped, keys under ``imagenet_head`` (the classifier) are dropped.
    """
    if os.path.isfile(os.path.expanduser(weights)):
        state = torch.load(os.path.expanduser(weights), map_location="cpu", weights_only=True)
    else:
        state = _download_named_weights(weights, body.torchvision_name)
    state = {
        k.removeprefix(body.imagenet_prefix): v for k, v in state.items() if not k.startswith(body.imagenet_head)
    }
    expected = body.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.endswith("num_batches_tracked")}  # FrozenBN has none
    mismatched = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected or mismatched:
        raise ValueError(
            f"backbone weights {weights} are not a torchvision {body.torchvision_name} state dict "
            f"(missing {len(missing)} keys, "
            f"unexpected {len(unexpected)}, wrong shape {len(mismatched)}, e.g. {(missing + unexpected + mismatched)[:2]})"
        )
    body.load_state_dict(state)


def _download_named_weights(name: str, model_name: str) -> dict[str, Tensor]:
    import torchvision.models

    members = torchvision.models.get_model_weights(model_name)
    if name not in members.__members__:
        raise ValueError(f"backbone weights {name!r} are neither a file nor one of {sorted(members.__members__)}")
    url = members[name].url
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)
    except OSError as error:  # URLError, socket and DNS failures are all OSErrors
        raise RuntimeError(
            f"could not download backbone weights {name} ({error.__class__.__name__}); fetch {url} on a "
            "machine with internet and pass model.backbone.weights=/path/to/that/file.pth"
        ) from None
