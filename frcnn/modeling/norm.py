"""Frozen batch norm, folded into the convolution that precedes it.

A frozen BN is a per-channel affine map, ``y = x * scale + shift`` with
``scale = weight / sqrt(running_var + eps)`` and ``shift = bias - running_mean * scale``,
so ``bn(conv(x))`` equals one convolution with weight ``W * scale[:, None, None, None]``
and bias ``shift``. Folding removes the BN pass (a read and a write of every activation,
and the float32 copy it makes under autocast: torchvision's ``FrozenBatchNorm2d``
multiplies half-precision activations by float32 buffers) and keeps each activation in
the convolution's dtype.

The state dict keeps torchvision's layout (``conv.weight``; ``bn.weight``, ``bn.bias``,
``bn.running_mean``, ``bn.running_var``): the folded weights are derived, never stored.
A folded weight is computed once and cached until one of its source tensors changes
(``load_state_dict``, ``.to()``, an optimizer step): frozen layers fold once, and in
inference every layer does. Where the weight trains, the BN runs unfolded, in the
activation's dtype, as one ``addcmul`` that saves only its ``[C, 1, 1]`` scale for
backward (folding into a trainable weight would save a new weight-sized tensor per layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import Tensor, nn

__all__ = ["ConvNorm", "FrozenBatchNorm2d", "conv_norm"]


class FrozenBatchNorm2d(torchvision.ops.FrozenBatchNorm2d):
    """torchvision's ``FrozenBatchNorm2d`` (same buffers and state dict) that keeps the
    input's dtype and can fold itself into a convolution (``folded_conv_params``)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps)
        self._folded: tuple[tuple, Tensor, Tensor] | None = None  # (source identity, weight, bias)

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        """``scale [C]`` and ``shift [C]`` such that ``bn(x) = x * scale + shift``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_and_shift()
        return torch.addcmul(shift.to(x.dtype)[:, None, None], x, scale.to(x.dtype)[:, None, None])

    def folded_conv_params(self, conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
        """Weight ``[O, I, k, k]`` and bias ``[O]`` of the convolution equal to ``self(conv(x))``,
        cached until ``conv``'s or this module's tensors change; never tracked by autograd."""
        if torch.compiler.is_compiling():  # an export's tensors have no data pointer to key the cache
            return self._fold(conv)
        sources = (conv.weight, conv.bias, self.weight, self.bias, self.running_mean, self.running_var)
        identity = tuple((t.data_ptr(), t._version) for t in sources if t is not None)
        if self._folded is None or self._folded[0] != identity:
            # A normal tensor also when first called under inference_mode (e.g. validation),
            # since the next training step's convolution saves it for backward.
            with torch.inference_mode(False), torch.no_grad():
                self._folded = (identity, *self._fold(conv))
        return self._folded[1], self._folded[2]

    def _fold(self, conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
        scale, shift = self.scale_and_shift()
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        return conv.weight * scale.to(conv.weight.dtype)[:, None, None, None], shift.to(conv.weight.dtype)


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(conv(x))``, computed as one folded convolution when ``norm`` is frozen and no
    gradient flows to the convolution's weight (frozen layers; every layer in inference)."""
    if not isinstance(norm, FrozenBatchNorm2d):
        return norm(conv(x))
    if conv.weight.requires_grad and torch.is_grad_enabled():
        norm._folded = None  # the weight is about to change: hold no stale copy of it
        return norm(conv(x))
    weight, bias = norm.folded_conv_params(conv)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class ConvNorm(nn.Sequential):
    """``nn.Sequential(conv, norm[, activation])`` (same state-dict keys ``0.*``, ``1.*``) run
    through ``conv_norm``; torchvision's ``Conv2dNormActivation`` has this layout."""

    def __init__(self, conv: nn.Conv2d, norm: nn.Module, activation: nn.Module | None = None) -> None:
        super().__init__(conv, norm, *([] if activation is None else [activation]))

    def forward(self, x: Tensor) -> Tensor:
        x = conv_norm(self[0], self[1], x)
        return self[2](x) if len(self) > 2 else x
