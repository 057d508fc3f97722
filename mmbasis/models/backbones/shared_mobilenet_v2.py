"""MobileNetV2 with shared 1x1 bases (paper Sec. 4; official ``models/ilsvrc/mobilenetv2.py``).

"Shared": in stages 3-6 (``layer3``..``layer6``) the 1x1 expansion convolution ``C -> 6C`` of every
non-first block is one tensor per stage. "Shared++": the 1x1 projection ``6C -> C`` is shared too.
Depthwise convolutions and all BNs stay per block. Each shared tensor is registered once, on its stage
(``layer4.shared_basis_expand_conv``, ``layer4.shared_basis_linear_conv``: named after mmdet's
convolution they replace, like the ResNet's ``shared_basis_conv2``).

``variant='official'`` reproduces the official architecture so that its weights load exactly: the
stage-1 block keeps a 1x1 expansion conv although t=1, the stem and the 1280-channel conv have biases,
and the blocks use ReLU (stem and last conv ReLU6). ``variant='mmdet'`` is mmdet's ``MobileNetV2``
layout (ReLU6 everywhere, no stage-1 expansion, no biases), e.g. to start from mmdet weights.

Initialisation: the official MobileNetV2 classes keep PyTorch's default init; we initialise the shared
bases orthogonally, the paper's method (``SharedBasisStage``), and everything else as mmdet does.
"""

import warnings
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule
from mmdet.models.utils import make_divisible
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ...deploy.folding import fold_conv_module
from ...utils.misc import check_bool, check_choice, check_distinct, check_int
from ..archs import MOBILENET, resolve_arch
from ..layers import BasisConv2d, SharedBasisBackboneMixin, SharedBasisStage

_SHAREABLE = ('expand_conv', 'linear_conv')
_VARIANTS = ('official', 'mmdet')
#: The sharing arguments and their defaults; an ``arch`` sets them (:mod:`mmbasis.models.archs`).
SHARING_DEFAULTS = dict(shared_convs=('expand_conv',), shared_stages=(2, 3, 4, 5), with_eca=False)


class ECA(nn.Module):
    """Efficient channel attention (Wang et al., 2020) as in the official Shared++ blocks at HEAD.

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``; a 1-D conv of kernel ``k`` over the pooled channels.
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = x.mean((2, 3)).unsqueeze(1)  # (N, 1, C)
        y = torch.sigmoid(self.conv(y)).transpose(1, 2).unsqueeze(-1)  # (N, C, 1, 1)
        return x * y


class InvertedResidualBlock(BaseModule):
    """Expand 1x1 -> depthwise 3x3 -> project 1x1 (linear), residual when shape is kept.

    Sub-modules keep mmdet's names (``expand_conv``, ``depthwise_conv``, ``linear_conv``: ConvModules).
    A shared 1x1 conv is a :class:`BasisConv2d` (kernel 1, no unique elements) placed as the
    ConvModule's ``conv``, referencing the stage's tensor.

    Args:
        in_channels, out_channels (int): ``C_in``, ``C_out``.
        mid_channels (int): expanded width ``t * C_in``.
        stride (int): stride of the depthwise conv.
        with_expand_conv (bool): build the 1x1 expansion.
        conv_cfg, norm_cfg, act_cfg: as mmcv's ConvModule; ``act_cfg`` for expand and depthwise.
        with_cp (bool): non-reentrant activation checkpointing.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        stride: int,
        with_expand_conv: bool = True,
        conv_cfg: Optional[dict] = None,
        norm_cfg: dict = dict(type='BN'),
        act_cfg: dict = dict(type='ReLU6'),
        with_cp: bool = False,
        init_cfg=None,
    ) -> None:
        super().__init__(init_cfg)
        self.with_cp = with_cp
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.with_expand_conv = with_expand_conv
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if with_expand_conv:
            self.expand_conv = ConvModule(in_channels, mid_channels, 1, act_cfg=act_cfg, **common)
        self.depthwise_conv = ConvModule(
            mid_channels, mid_channels, 3, stride=stride, padding=1, groups=mid_channels, act_cfg=act_cfg, **common
        )
        self.linear_conv = ConvModule(mid_channels, out_channels, 1, act_cfg=None, **common)
        self.eca = None

    def use_shared_bases(self, shared: Dict[str, nn.Parameter], eca_kernel: Optional[int] = None) -> None:
        """Make the listed 1x1 convs (``expand_conv``/``linear_conv``) use the stage-owned tensors ``shared``.

        ``eca_kernel``: add ECA with this kernel after the projection (official Shared++ blocks at HEAD).
        """
        for name, basis in shared.items():  # the whole 1x1 conv is the stage's tensor
            getattr(self, name).conv = BasisConv2d.like(getattr(self, name).conv, basis)
        if eca_kernel:
            self.eca = ECA(eca_kernel)

    def _inner_forward(self, x: Tensor) -> Tensor:
        out = self.expand_conv(x) if self.with_expand_conv else x
        out = self.linear_conv(self.depthwise_conv(out))
        if self.eca is not None:
            out = self.eca(out)
        return x + out if self.use_res_connect else out

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)

    def switch_to_deploy(self) -> None:
        """Fold each norm into its conv; shared 1x1 convs become plain convs."""
        for name in ('expand_conv', 'depthwise_conv', 'linear_conv'):
            if hasattr(self, name):
                fold_conv_module(getattr(self, name))


@MODELS.register_module()
class SharedBasisMobileNetV2(SharedBasisBackboneMixin, BaseModule):
    """MobileNetV2 backbone with shared 1x1 bases ("Shared" / "Shared++").

    Build a paper model by name, ``SharedBasisMobileNetV2(arch='MobileNetV2-Shared++', variant='mmdet')``, or give
    the sharing arguments (``shared_convs``, ``shared_stages``, ``with_eca``) explicitly; an explicit sharing
    argument given with an arch replaces the arch's (``arch`` then becomes None).

    Args:
        arch (str, optional): a MobileNetV2 of the paper (:data:`mmbasis.models.archs.PAPER_MODELS`), e.g.
            ``'MobileNetV2-Shared++'``; it sets the sharing arguments. The layout (``variant``) is not part of it.
        widen_factor (float): width multiplier. Default 1.0.
        shared_convs (Sequence[str]): ``('expand_conv',)`` (Shared), ``('expand_conv', 'linear_conv')``
            (Shared++) or ``()`` (plain MobileNetV2).
        shared_stages (Sequence[int]): 0-based indices of the stages (``layer{i+1}``) whose non-first
            blocks share bases. Default ``(2, 3, 4, 5)``, the paper's stages 3-6.
        with_eca (bool): ECA attention (Conv1d, k=1 for C<96 else 3, no bias) after the projection BN of
            every shared block; needs ``'linear_conv'`` in ``shared_convs``. The official Shared++ code has it
            since March 2021 (17 parameters); the published result very likely predates it, so the default
            is False. Use True to load ECA-carrying official checkpoints.
        variant (str): ``'official'`` (Net_RL2 layout, loads official weights; backbone-only counts
            2,226,272 plain / 1,962,080 Shared / 1,697,888 Shared++ / 1,697,905 Shared++ with ECA) or
            ``'mmdet'`` (mmdet's ``MobileNetV2`` layout).
        out_indices (Sequence[int]): outputs among ``layer1..layer7`` (0..6) and ``conv2`` (7).
            Default ``(1, 2, 4, 7)``: channels 24, 32, 96, 1280 at strides 4, 8, 16, 32.
        frozen_stages (int): -1 (none) .. 7; freezes ``conv1`` and ``layer1..K`` with their shared bases.
        conv_cfg, norm_cfg, act_cfg: ConvModule configs. ``act_cfg`` is the stem/last-conv activation (and
            the blocks' for ``variant='mmdet'``; official blocks use ReLU).
        norm_eval (bool): keep BNs in eval mode during training. Default False.
        with_cp (bool): non-reentrant activation checkpointing of each block.
        deploy (bool): build the deploy structure (norms folded, plain convs).
        pretrained (str, optional): deprecated alias of ``init_cfg=dict(type='Pretrained', ...)``.
        init_cfg (dict | list[dict], optional): mmengine init config.
    """

    # expand_ratio, channel, num_blocks, stride (mmdet/torchvision MobileNetV2)
    arch_settings = [
        [1, 16, 1, 1],
        [6, 24, 2, 2],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
    ]

    def __init__(
        self,
        widen_factor: float = 1.0,
        arch: Optional[str] = None,
        variant: str = 'official',
        out_indices: Sequence[int] = (1, 2, 4, 7),
        frozen_stages: int = -1,
        conv_cfg: Optional[dict] = None,
        norm_cfg: dict = dict(type='BN'),
        act_cfg: dict = dict(type='ReLU6'),
        norm_eval: bool = False,
        with_cp: bool = False,
        deploy: bool = False,
        pretrained: Optional[str] = None,
        init_cfg=None,
        **sharing,
    ) -> None:
        unknown = [k for k in sharing if k not in SHARING_DEFAULTS]
        if unknown:
            raise TypeError(f'{MOBILENET} got unexpected arguments {unknown}')
        sharing, arch = resolve_arch(MOBILENET, arch, sharing, SHARING_DEFAULTS)
        shared_convs, shared_stages, with_eca = sharing['shared_convs'], sharing['shared_stages'], sharing['with_eca']
        flags = dict(with_eca=with_eca, norm_eval=norm_eval, with_cp=with_cp, deploy=deploy)
        _check_arguments(
            widen_factor, shared_convs, shared_stages, with_eca, variant, out_indices, frozen_stages, flags
        )
        super().__init__(_init_cfg(pretrained, init_cfg))
        self.arch, self.widen_factor, self.variant, self.with_eca = arch, widen_factor, variant, with_eca
        self.shared_convs, self.shared_stages = tuple(shared_convs), tuple(shared_stages)
        self.out_indices, self.frozen_stages = tuple(out_indices), frozen_stages
        self.norm_eval, self.with_cp = norm_eval, with_cp
        official = variant == 'official'  # the official stem/last conv carry a bias before their BN
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        block_cfg = dict(act_cfg=dict(type='ReLU') if official else act_cfg, with_cp=with_cp, **common)

        in_channels = make_divisible(32 * widen_factor, 8)
        self.conv1 = _conv_module(3, in_channels, 3, stride=2, padding=1, bias=official, act_cfg=act_cfg, **common)
        self.layers = []
        for i, (t, channel, num_blocks, stride) in enumerate(self.arch_settings):
            out_channels = make_divisible(channel * widen_factor, 8)
            self.add_module(
                f'layer{i + 1}', self._make_stage(i, in_channels, out_channels, t, num_blocks, stride, block_cfg)
            )
            self.layers.append(f'layer{i + 1}')
            in_channels = out_channels
        self.out_channel = int(1280 * widen_factor) if widen_factor > 1.0 else 1280
        self.conv2 = _conv_module(in_channels, self.out_channel, 1, bias=official, act_cfg=act_cfg, **common)
        self.layers.append('conv2')
        self.deploy = False
        if deploy:
            self.switch_to_deploy()

    def _make_stage(
        self, i: int, in_channels: int, out_channels: int, t: int, num_blocks: int, stride: int, block_cfg: dict
    ) -> SharedBasisStage:
        """``layer{i+1}``: ``num_blocks`` inverted residuals; in a shared stage blocks 2..n use its 1x1 bases."""
        stage = SharedBasisStage()
        for j in range(num_blocks):
            cin = in_channels if j == 0 else out_channels
            stage.append(
                InvertedResidualBlock(
                    cin,
                    out_channels,
                    int(round(cin * t)),
                    stride if j == 0 else 1,
                    with_expand_conv=t != 1 or self.variant == 'official',
                    **block_cfg,
                )
            )
        if i not in self.shared_stages or not self.shared_convs:
            return stage
        shared = {}
        for name in self.shared_convs:
            conv = getattr(stage[1], name).conv
            shared[name] = stage.add_shared_basis(
                f'shared_basis_{name}', conv.out_channels, conv.in_channels, 1, family=name, init=False
            )
        stage.reset_shared_bases()
        for blk in list(stage)[1:]:
            blk.use_shared_bases(shared, eca_kernel=(1 if out_channels < 96 else 3) if self.with_eca else None)
        return stage

    def forward(self, x: Tensor) -> tuple:
        x = self.conv1(x)
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.conv1.eval()
            for p in self.conv1.parameters():
                p.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            layer = getattr(self, f'layer{i}')
            layer.eval()
            for p in layer.parameters():  # includes the stage's shared bases
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def _stages(self):
        return [getattr(self, name) for name in self.layers[:-1]]

    def _deploy_unshared_parts(self) -> None:
        fold_conv_module(self.conv1)
        fold_conv_module(self.conv2)


def _init_cfg(pretrained: Optional[str], init_cfg):
    """The init_cfg to use: ``pretrained`` (deprecated alias), the given one, or mmdet's MobileNetV2 default."""
    if pretrained is None:
        return (
            init_cfg
            if init_cfg is not None
            else [dict(type='Kaiming', layer='Conv2d'), dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
        )
    if init_cfg is not None:
        raise ValueError(
            'init_cfg and pretrained cannot be given together (pretrained is a deprecated alias of '
            "init_cfg=dict(type='Pretrained', checkpoint=...))"
        )
    return dict(type='Pretrained', checkpoint=pretrained)


def _conv_module(*args, **kwargs) -> ConvModule:
    """mmcv's ConvModule, without its warning about a conv bias before a norm (the official layout has one)."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Unnecessary conv bias')
        return ConvModule(*args, **kwargs)


def _check_arguments(
    widen_factor, shared_convs, shared_stages, with_eca, variant, out_indices, frozen_stages, flags: Dict[str, object]
) -> None:
    """Clear errors for the arguments of :class:`SharedBasisMobileNetV2` (naming the value and what is allowed)."""
    if not isinstance(widen_factor, (int, float)) or isinstance(widen_factor, bool) or widen_factor <= 0:
        raise ValueError(f'widen_factor={widen_factor!r} is not allowed: it must be a number > 0')
    check_distinct('shared_convs', shared_convs, _SHAREABLE)
    multi_block = tuple(i for i, a in enumerate(SharedBasisMobileNetV2.arch_settings) if a[2] > 1)
    check_distinct(
        'shared_stages',
        shared_stages,
        multi_block,
        hint='0-based indices of the stages with more than one block; the paper shares (2, 3, 4, 5)',
    )
    for name, flag in flags.items():
        check_bool(name, flag)
    if with_eca and 'linear_conv' not in shared_convs:
        raise ValueError(
            f'with_eca=True needs a shared projection (official Shared++ blocks): add '
            f"'linear_conv' to shared_convs={tuple(shared_convs)!r}"
        )
    check_choice('variant', variant, _VARIANTS)
    check_distinct('out_indices', out_indices, range(8), allow_empty=False, hint='0..6: layer1..layer7, 7: conv2')
    check_int('frozen_stages', frozen_stages, low=-1, high=7)
