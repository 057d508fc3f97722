"""Folding of BatchNorm into the convolution before it (deploy mode)."""

from typing import Optional, Tuple

import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm


def bn_scale_shift(norm: Optional[nn.Module], channels: int, like: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-channel ``(scale, shift)`` with ``norm(z) == scale * z + shift`` in eval mode.

    ``None`` or ``nn.Identity`` give the identity. Only BatchNorm (any ``_BatchNorm``, including
    SyncBatchNorm) can be folded; GroupNorm/LayerNorm depend on the input and raise ``TypeError``.
    """
    if norm is None or isinstance(norm, nn.Identity):
        return like.new_ones(channels), like.new_zeros(channels)
    if not isinstance(norm, _BatchNorm):
        raise TypeError(
            f'cannot fold {type(norm).__name__} into a convolution: only BatchNorm layers '
            '(norm_cfg type BN/SyncBN) can be folded for deploy mode'
        )
    if norm.running_var is None or norm.running_mean is None:
        raise TypeError(f'cannot fold {type(norm).__name__} without running statistics (track_running_stats=False)')
    std = (norm.running_var + norm.eps).sqrt()
    scale = norm.weight / std if norm.affine else 1.0 / std
    shift = -norm.running_mean * scale
    if norm.affine:
        shift = shift + norm.bias
    return scale.detach(), shift.detach()


def fuse_conv_norm(conv: nn.Conv2d, norm: Optional[nn.Module]) -> nn.Conv2d:
    """A new bias-carrying ``nn.Conv2d`` equal to ``norm(conv(x))`` in eval mode (any groups)."""
    scale, shift = bn_scale_shift(norm, conv.out_channels, conv.weight)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )  # the model's device and precision
    bias = conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
    fused.weight.data.copy_(conv.weight.detach() * scale.view(-1, 1, 1, 1))
    fused.bias.data.copy_(bias * scale + shift)
    return fused
