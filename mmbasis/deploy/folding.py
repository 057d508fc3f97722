"""Folding a shared-basis backbone into its deploy form: every BatchNorm into the convolution before it, every basis
or factorised convolution into plain ``nn.Conv2d`` modules.

Everything that changes the structure of a model for deployment is here; the models call it from their
``switch_to_deploy()`` (the mmpretrain idiom: one-way, outputs unchanged in eval mode). The modules are recognised by
what they offer, not by their classes, so that this package sits below :mod:`mmbasis.models`:

* a *factorised convolution* (``FactorizedConv2d``) has ``basis``, ``basis_norm``, ``coeff`` and
  ``forced_deploy_form``; it folds into one merged k x k convolution or into a k x k basis convolution followed by a
  1 x 1 one (:data:`DEPLOY_FORMS`), both exact (:func:`fold_factorized`);
* a *basis convolution* (``BasisConv2d``) has ``full_weight()`` and becomes an ``nn.Conv2d`` (:func:`basis_to_conv2d`);
* plain ``nn.Conv2d`` (exactly that class: subclasses built by ``conv_cfg`` transform their weights in ``forward``).
"""

from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.misc import brief

#: the two exact deploy forms of a factorised convolution
DEPLOY_FORMS = ('merged', 'factorized')


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def deploy_form(in_channels: int, out_channels: int, rank: int, kernel_size) -> str:
    """The cheaper exact deploy form of a factorised convolution: ``'merged'`` or ``'factorized'``.

    Multiply-accumulates per output position: ``R (S k^2 + T)`` factorised vs ``S k^2 T`` merged.
    """
    k = _pair(kernel_size)
    k2 = k[0] * k[1]
    return 'merged' if in_channels * k2 * out_channels <= rank * (in_channels * k2 + out_channels) else 'factorized'


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


def _new_conv(cin: int, cout: int, kernel, stride=1, padding=0, dilation=1, groups=1, like: Tensor = None, **kw):
    """A bias-carrying ``nn.Conv2d`` on the device and in the precision of ``like``."""
    return nn.Conv2d(
        cin, cout, kernel, stride, padding, dilation, groups, bias=True, device=like.device, dtype=like.dtype, **kw
    )


def fuse_conv_norm(conv: nn.Conv2d, norm: Optional[nn.Module]) -> nn.Conv2d:
    """A new bias-carrying ``nn.Conv2d`` equal to ``norm(conv(x))`` in eval mode (any groups)."""
    scale, shift = bn_scale_shift(norm, conv.out_channels, conv.weight)
    fused = _new_conv(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        like=conv.weight,
        padding_mode=conv.padding_mode,
    )
    bias = conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
    fused.weight.data.copy_(conv.weight.detach() * scale.view(-1, 1, 1, 1))
    fused.bias.data.copy_(bias * scale + shift)
    return fused


@torch.no_grad()
def basis_to_conv2d(basis: nn.Module) -> nn.Conv2d:
    """An ordinary ``nn.Conv2d`` (no bias) with a copy of a basis convolution's weights ``[unique ; shared]``."""
    weight = basis.full_weight().detach()
    conv = nn.Conv2d(
        basis.in_channels, basis.rank, basis.kernel_size, basis.stride, basis.padding, basis.dilation, bias=False
    ).to(device=weight.device, dtype=weight.dtype)
    conv.weight.copy_(weight)
    return conv


@torch.no_grad()
def fold_factorized(conv: nn.Module, out_norm: Optional[nn.Module] = None) -> nn.Module:
    """Plain, bias-carrying convolutions computing ``out_norm(conv(x))`` in eval mode for a factorised convolution.

    The norms are folded (``basis_norm`` into the basis, ``out_norm`` into the coefficients) and the form is
    ``conv.forced_deploy_form`` when set, otherwise the cheaper exact one by multiply-accumulates per output position
    (:func:`deploy_form`): ``R (S k^2 + T)`` for basis + coefficients (``nn.Sequential`` of a k x k and a 1 x 1 conv)
    vs ``S k^2 T`` for one merged k x k conv. Both forms are exact: the basis bias passes through the 1 x 1
    coefficients, so zero padding is unaffected.
    """
    b = conv.basis
    w_basis = b.full_weight().detach().clone()
    s1, t1 = bn_scale_shift(conv.basis_norm, b.rank, w_basis)
    w_basis = w_basis * s1.view(-1, 1, 1, 1)
    coeff = conv.coeff.weight.detach().flatten(1)  # (T, R)
    s2, t2 = bn_scale_shift(out_norm, conv.out_channels, coeff)
    coeff = coeff * s2.view(-1, 1)
    form = conv.forced_deploy_form or deploy_form(b.in_channels, conv.out_channels, b.rank, b.kernel_size)
    if form not in DEPLOY_FORMS:
        raise ValueError(f'forced_deploy_form={form!r} is not allowed: use one of {DEPLOY_FORMS} or None')
    geometry = dict(stride=b.stride, padding=b.padding, dilation=b.dilation, like=w_basis)
    if form == 'merged':
        merged = _new_conv(b.in_channels, conv.out_channels, b.kernel_size, **geometry)
        merged.weight.copy_(torch.einsum('tr,rskl->tskl', coeff, w_basis))
        merged.bias.copy_(coeff @ t1 + t2)
        return merged
    basis_conv = _new_conv(b.in_channels, b.rank, b.kernel_size, **geometry)
    basis_conv.weight.copy_(w_basis)
    basis_conv.bias.copy_(t1)
    coeff_conv = _new_conv(b.rank, conv.out_channels, 1, like=w_basis)
    coeff_conv.weight.copy_(coeff.view(conv.out_channels, b.rank, 1, 1))
    coeff_conv.bias.copy_(t2)
    return nn.Sequential(basis_conv, coeff_conv)


def plain_conv(conv: nn.Module, name: str) -> nn.Conv2d:
    """``conv`` if it is exactly ``nn.Conv2d``: subclasses built by ``conv_cfg`` (ConvWS, ConvAWS, DCN ...)
    transform their weights in ``forward``, so folding their raw ``weight`` would be wrong."""
    if type(conv) is not nn.Conv2d:
        raise TypeError(
            f'cannot fold {name} ({type(conv).__name__}) for deploy mode: only plain nn.Conv2d '
            "convolutions (conv_cfg=None or dict(type='Conv2d')) can be folded"
        )
    return conv


def fold_conv(conv: nn.Module, norm: Optional[nn.Module], name: str) -> nn.Module:
    """``norm(conv(x))`` as plain convolutions, whatever kind ``conv`` is (factorised, basis or plain)."""
    if hasattr(conv, 'coeff') and hasattr(conv, 'basis_norm'):
        return fold_factorized(conv, norm)
    if hasattr(conv, 'full_weight'):
        return fuse_conv_norm(basis_to_conv2d(conv), norm)
    return fuse_conv_norm(plain_conv(conv, name), norm)


def fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Fold every norm of a Sequential (conv, norm[, act] ...) into the conv before it (stem, shortcut)."""
    mods, out, i = list(seq), [], 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and not isinstance(mods[i + 1], (nn.Conv2d, nn.ReLU)):
            name = f'the convolution at index {i} of a stem/shortcut'
            out += [fuse_conv_norm(plain_conv(m, name), mods[i + 1]), nn.Identity()]
            i += 2
        else:
            out.append(m)
            i += 1
    return nn.Sequential(*out)


def fold_conv_module(cm: nn.Module) -> None:
    """Fold the norm of an mmcv ``ConvModule`` into its conv, in place (a basis conv becomes a plain ``nn.Conv2d``)."""
    conv = basis_to_conv2d(cm.conv) if hasattr(cm.conv, 'full_weight') else cm.conv
    if cm.with_norm:
        cm.conv = fuse_conv_norm(conv, cm.norm)
        setattr(cm, cm.norm_name, nn.Identity())
    else:
        cm.conv = conv


def fold_residual_block(block: nn.Module) -> None:
    """Fold an mmdet ``BasicBlock``/``Bottleneck`` in place: ``conv{k}`` + ``norm{k}`` and the shortcut."""
    if getattr(block, 'with_plugins', False) or getattr(block, 'with_dcn', False):
        raise TypeError('deploy mode does not support blocks with plugins or DCN')
    for i, conv_name in enumerate(('conv1', 'conv2', 'conv3')):
        if not hasattr(block, conv_name):
            continue
        norm_name = getattr(block, f'norm{i + 1}_name')
        setattr(block, conv_name, fold_conv(getattr(block, conv_name), getattr(block, norm_name), conv_name))
        setattr(block, norm_name, nn.Identity())
    if block.downsample is not None:
        block.downsample = fold_sequential(block.downsample)


def fold_backbone(backbone: nn.Module) -> None:
    """Fold a shared-basis backbone in place (``SharedBasisBackboneMixin.switch_to_deploy``).

    The backbone folds its own stem and other unshared parts (``_deploy_unshared_parts``), every block of every stage
    folds itself (``switch_to_deploy``), then the stages drop their shared bases, which now live folded in each block
    (the per-layer norms differ). A no-op on a backbone already in deploy form.
    """
    if backbone.deploy:
        return
    backbone._deploy_unshared_parts()
    for stage in backbone._stages():
        for block in stage:
            block.switch_to_deploy()
        stage.remove_shared_bases()
    backbone.deploy = True
    # The new modules start trainable and in training mode: re-apply frozen_stages, norm_eval, the mode.
    backbone.train(backbone.training)


def check_forms(forms: dict, convs: dict) -> None:
    """``ValueError`` unless ``forms`` maps names of the factorised convolutions ``convs`` to :data:`DEPLOY_FORMS`."""
    if not isinstance(forms, dict):
        raise ValueError(f'deploy_forms={forms!r} is not allowed: give a dict {{conv name: form}}')
    unknown = [n for n in forms if n not in convs]
    if unknown:
        raise ValueError(
            f'deploy_forms names {brief(unknown)}, which are not factorised convolutions of this backbone; '
            f'allowed: {brief(convs) if convs else "none (this backbone has no factorised convolution)"}'
        )
    bad = {n: f for n, f in forms.items() if f not in DEPLOY_FORMS}
    if bad:
        raise ValueError(f'deploy_forms has the forms {bad}: allowed are {DEPLOY_FORMS}')
