"""MobileNetV3-Large + FPN, the backbone of torchvision's ``fasterrcnn_mobilenet_v3_large_fpn``.

The body is torchvision's ``mobilenet_v3_large().features`` with the same parameter names
(``0.0.weight``, ``1.block.0.0.weight`` …), so its ImageNet file loads as it is: a stem, fifteen
inverted residual blocks and a last 1×1 convolution. torchvision's ``_mobilenet_extractor``
splits them into six stages, each starting at a strided layer (0, 2, 4, 7, 13) plus the last
convolution (16); the FPN reads the outputs of the last two, block 13 (160 channels) and the
last convolution (960). Block 13 is the stride-2 block of its stage, so both levels have
stride 32, and the max-pool level stride 64.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torchvision.ops import SqueezeExcitation

from frcnn.modeling.backbone import NORM_LAYERS, BackboneWithFPN, load_backbone_weights
from frcnn.modeling.fpn import FPN
from frcnn.modeling.norm import ConvNorm

__all__ = ["MobileNetV3Large", "mobilenet_v3_large_fpn"]

# The paper's Table 1, one row per inverted residual block: kernel, expanded channels, output
# channels, squeeze-excitation channels (0: none, else expanded / 4 rounded to 8 as torchvision
# rounds), hard-swish (else ReLU), stride.
_BLOCKS = (
    (3, 16, 16, 0, False, 1),
    (3, 64, 24, 0, False, 2),
    (3, 72, 24, 0, False, 1),
    (5, 72, 40, 24, False, 2),
    (5, 120, 40, 32, False, 1),
    (5, 120, 40, 32, False, 1),
    (3, 240, 80, 0, True, 2),
    (3, 200, 80, 0, True, 1),
    (3, 184, 80, 0, True, 1),
    (3, 184, 80, 0, True, 1),
    (3, 480, 112, 120, True, 1),
    (3, 672, 112, 168, True, 1),
    (5, 672, 160, 168, True, 2),
    (5, 960, 160, 240, True, 1),
    (5, 960, 160, 240, True, 1),
)
STEM_CHANNELS, LAST_CHANNELS = 16, 960
# First layer of each stage (torchvision's ``stage_indices``): the stem, each strided block, the last conv.
STAGE_STARTS = (0, *(index + 1 for index, row in enumerate(_BLOCKS) if row[-1] == 2), len(_BLOCKS) + 1)


class InvertedResidual(nn.Module):
    """1×1 expand (unless the width stays) → k×k depthwise (carries the stride) → squeeze-excitation
    → 1×1 linear projection, plus the input where the shape is unchanged."""

    def __init__(
        self,
        in_channels: int,
        kernel: int,
        expanded: int,
        out_channels: int,
        squeeze: int,
        hard_swish: bool,
        stride: int,
        norm: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        activation = nn.Hardswish if hard_swish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != in_channels:
            expand = nn.Conv2d(in_channels, expanded, 1, bias=False)
            layers.append(ConvNorm(expand, norm(expanded), activation(inplace=True)))
        depthwise = nn.Conv2d(expanded, expanded, kernel, stride, (kernel - 1) // 2, groups=expanded, bias=False)
        layers.append(ConvNorm(depthwise, norm(expanded), activation(inplace=True)))
        if squeeze:
            layers.append(SqueezeExcitation(expanded, squeeze, scale_activation=nn.Hardsigmoid))
        layers.append(ConvNorm(nn.Conv2d(expanded, out_channels, 1, bias=False), norm(out_channels)))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.use_residual else out


class MobileNetV3Large(nn.Sequential):
    """torchvision's ``mobilenet_v3_large().features``; ``forward`` returns the last two stages' outputs.

    Args:
        norm: ``"frozen_bn"`` (statistics and affine fixed) or ``"bn"`` (trainable BatchNorm2d).
        trainable_layers: how many of the six stages, counted from the last, are trained
            (0–6, torchvision's convention; 3 trains blocks 7–15 and the last convolution).

    Shapes: images ``[N, 3, H, W]`` → ``[N, 160, H/32, W/32]`` (block 13) and
    ``[N, 960, H/32, W/32]`` (the last convolution), sizes rounded up.
    """

    out_channels = (_BLOCKS[STAGE_STARTS[-2] - 1][2], LAST_CHANNELS)
    torchvision_name = "mobilenet_v3_large"
    imagenet_prefix, imagenet_head = "features.", "classifier."

    def __init__(self, norm: str = "frozen_bn", trainable_layers: int = 3) -> None:
        if norm not in NORM_LAYERS:
            raise ValueError(f"norm={norm!r} is not supported: use one of {sorted(NORM_LAYERS)}")
        if not 0 <= trainable_layers <= len(STAGE_STARTS):
            raise ValueError(f"trainable_layers={trainable_layers} must be between 0 and {len(STAGE_STARTS)}")
        norm_layer = NORM_LAYERS[norm]
        stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        layers: list[nn.Module] = [ConvNorm(stem, norm_layer(STEM_CHANNELS), nn.Hardswish(inplace=True))]
        in_channels = STEM_CHANNELS
        for kernel, expanded, out_channels, squeeze, hard_swish, stride in _BLOCKS:
            layers.append(
                InvertedResidual(in_channels, kernel, expanded, out_channels, squeeze, hard_swish, stride, norm_layer)
            )
            in_channels = out_channels
        last = nn.Conv2d(in_channels, LAST_CHANNELS, 1, bias=False)
        layers.append(ConvNorm(last, norm_layer(LAST_CHANNELS), nn.Hardswish(inplace=True)))
        super().__init__(*layers)
        self._init_weights()
        frozen = len(self) if trainable_layers == 0 else STAGE_STARTS[len(STAGE_STARTS) - trainable_layers]
        for layer in list(self)[:frozen]:
            layer.requires_grad_(False)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> list[Tensor]:
        x = images
        features = []
        for index, layer in enumerate(self):
            x = layer(x)
            if index in STAGE_STARTS[-2:]:
                features.append(x)
        return features


def mobilenet_v3_large_fpn(
    *, weights: str | None = None, norm: str = "frozen_bn", trainable_layers: int = 3, out_channels: int = 256
) -> BackboneWithFPN:
    """MobileNetV3-Large + FPN on its last two stages, ``out_channels`` per level (torchvision's
    ``mobilenet_backbone(backbone_name="mobilenet_v3_large", fpn=True)``).

    ``weights``: ImageNet weights for the body, a torchvision ``mobilenet_v3_large`` state-dict file
    or a ``MobileNet_V3_Large_Weights`` entry name (see ``load_backbone_weights``); None: random init.
    """
    body = MobileNetV3Large(norm, trainable_layers)
    if weights:
        load_backbone_weights(body, weights)
    return BackboneWithFPN(body, FPN(body.out_channels, out_channels), out_channels)
