"""ResNet with deeply shared filter bases (paper Sec. 3; official ``models/ilsvrc/resnet.py``).

Every stage ``layer{i}`` is a :class:`~mmbasis.models.layers.SharedBasisStage`: its first block is an
ordinary mmdet block (it carries the stride and the projection shortcut), blocks ``2..n`` are *shared
blocks* whose listed convolutions use a filter basis owned by the stage:

* ``shared_rank`` is an int (ResNet-18/34 "S{s}U{u}"): each shared convolution is factorised into
  ``[unique basis (u) ; shared basis (s)] -> BN -> 1x1 coefficients`` followed by the block's own BN
  (two BNs per factorised convolution, as in the official code). Ranks scale with ``rank_multipliers``
  (paper: x1, x2, x4, x8 for the four stages).
* ``shared_rank=None`` (ResNet-50/101 "Shared"/"Shared++", ShaResNet topology): the whole convolution is
  shared by the stage; the block's other 1x1 convolutions act as coefficients.

``basis_sharing='stage'`` uses one basis per stage for every listed convolution ("S{s}U{u}");
``basis_sharing='conv'`` one basis per stage and convolution position ("S{s}U{u}*", "Shared++").
Bases of one stage with the same shape are initialised and regularised jointly; bases of different
kernel sizes form separate pooling families of the orthogonality regulariser (paper Sec. 2.2 of the digest).
"""
from typing import Dict, Optional, Sequence, Tuple

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet.models.layers import ResLayer
from mmdet.registry import MODELS
from torch import Tensor

from ..layers import BasisConv2d, FactorizedConv2d, SharedBasisBackboneMixin, SharedBasisStage, fuse_conv_norm

_SHAREABLE = {BasicBlock: ('conv1', 'conv2'), Bottleneck: ('conv1', 'conv2', 'conv3')}
_DEFAULT_SHARED = {BasicBlock: ('conv1', 'conv2'), Bottleneck: ('conv2', )}
_SHARINGS = ('stage', 'conv')


class _BlockMixin:
    """Non-reentrant activation checkpointing and deploy-mode folding for mmdet's residual blocks."""

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            # Non-reentrant checkpointing is correct with parameters shared by several checkpointed
            # blocks (and under DDP); mmdet's blocks use the reentrant variant.
            return cp.checkpoint(self._forward_no_cp, x, use_reentrant=False)
        return super().forward(x)

    def _forward_no_cp(self, x: Tensor) -> Tensor:
        self.with_cp = False
        try:
            return super().forward(x)
        finally:
            self.with_cp = True

    def _conv_norm_pairs(self):
        for i, conv_name in enumerate(('conv1', 'conv2', 'conv3')):
            if hasattr(self, conv_name):
                yield conv_name, getattr(self, f'norm{i + 1}_name')

    def switch_to_deploy(self) -> None:
        """Fold every norm into the convolution before it; shared/factorised convs become plain convs."""
        if getattr(self, 'with_plugins', False) or getattr(self, 'with_dcn', False):
            raise TypeError('deploy mode does not support blocks with plugins or DCN')
        for conv_name, norm_name in self._conv_norm_pairs():
            conv, norm = getattr(self, conv_name), getattr(self, norm_name)
            if isinstance(conv, FactorizedConv2d):
                fused = conv.fuse(norm)
            elif isinstance(conv, BasisConv2d):
                fused = fuse_conv_norm(conv.to_conv2d(), norm)
            else:
                fused = fuse_conv_norm(_plain_conv(conv, conv_name), norm)
            setattr(self, conv_name, fused)
            setattr(self, norm_name, nn.Identity())
        if self.downsample is not None:
            self.downsample = _fuse_sequential(self.downsample)


def _plain_conv(conv: nn.Module, name: str) -> nn.Conv2d:
    """``conv`` if it is exactly ``nn.Conv2d``: subclasses built by ``conv_cfg`` (ConvWS, ConvAWS, DCN ...)
    transform their weights in ``forward``, so folding their raw ``weight`` would be wrong."""
    if type(conv) is not nn.Conv2d:
        raise TypeError(f'cannot fold {name} ({type(conv).__name__}) for deploy mode: only plain nn.Conv2d '
                        "convolutions (conv_cfg=None or dict(type='Conv2d')) can be folded")
    return conv


def _fuse_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Fold every norm of a Sequential (conv, norm[, act] ...) into the conv before it."""
    mods = list(seq)
    out = []
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and not isinstance(mods[i + 1], (nn.Conv2d, nn.ReLU)):
            conv = _plain_conv(m, f'the convolution at index {i} of a stem/shortcut')
            out += [fuse_conv_norm(conv, mods[i + 1]), nn.Identity()]
            i += 2
        else:
            out.append(m)
            i += 1
    return nn.Sequential(*out)


class PlainBasicBlock(_BlockMixin, BasicBlock):
    """mmdet's BasicBlock with non-reentrant checkpointing and deploy folding (first block of a stage)."""


class PlainBottleneck(_BlockMixin, Bottleneck):
    """mmdet's Bottleneck with non-reentrant checkpointing and deploy folding (first block of a stage)."""


class _SharedBlockMixin(_BlockMixin):

    def _install_shared_convs(self, shared: Dict[str, nn.Parameter], unique_rank: int, factorized: bool,
                              norm_cfg: dict) -> None:
        """Replace the listed convolutions (built by mmdet's block) by basis convolutions."""
        for conv_name, basis in shared.items():
            old = getattr(self, conv_name)
            kw = dict(kernel_size=old.kernel_size[0], stride=old.stride[0], padding=old.padding[0],
                      dilation=old.dilation[0])
            if factorized:
                new = FactorizedConv2d(old.in_channels, old.out_channels, unique_rank, basis, norm_cfg=norm_cfg, **kw)
            else:
                new = BasisConv2d(old.in_channels, 0, basis, **kw)
            setattr(self, conv_name, new)  # same attribute -> same position in the module order


class SharedBasicBlock(_SharedBlockMixin, BasicBlock):
    """BasicBlock whose convolutions in ``shared`` use the stage's shared basis.

    Args:
        shared (dict[str, Parameter]): conv name (``'conv1'``/``'conv2'``) -> shared basis
            ``(s, planes, 3, 3)`` owned by the stage.
        unique_rank (int): ``u`` of this stage.
        factorized (bool): factorise (basis -> BN -> 1x1 coefficients) or share the whole conv.
        Other arguments as mmdet's ``BasicBlock``.
    """

    def __init__(self, inplanes: int, planes: int, shared: Dict[str, nn.Parameter], unique_rank: int = 0,
                 factorized: bool = True, **kwargs) -> None:
        super().__init__(inplanes, planes, **kwargs)
        self._install_shared_convs(shared, unique_rank, factorized, kwargs.get('norm_cfg', dict(type='BN')))


class SharedBottleneck(_SharedBlockMixin, Bottleneck):
    """Bottleneck whose convolutions in ``shared`` (``'conv1'``/``'conv2'``/``'conv3'``) use the stage's bases."""

    def __init__(self, inplanes: int, planes: int, shared: Dict[str, nn.Parameter], unique_rank: int = 0,
                 factorized: bool = True, **kwargs) -> None:
        super().__init__(inplanes, planes, **kwargs)
        self._install_shared_convs(shared, unique_rank, factorized, kwargs.get('norm_cfg', dict(type='BN')))


@MODELS.register_module()
class SharedBasisResNet(SharedBasisBackboneMixin, ResNet):
    """ResNet backbone with deeply shared filter bases.

    Args:
        depth (int): 18, 34, 50, 101 or 152.
        shared_rank (int, optional): ``s``, shared basis rank of stage 0 (scaled by ``rank_multipliers``).
            ``None`` shares the whole convolution (no factorisation, ``unique_rank`` must be 0).
        unique_rank (int): ``u``, unique basis rank of stage 0 (scaled by ``rank_multipliers``).
        rank_multipliers (Sequence[int]): per-stage rank multipliers. Default ``(1, 2, 4, 8)``.
        basis_sharing (str): ``'stage'`` (one basis per stage for every shared conv) or ``'conv'`` (one
            basis per stage and conv position, the paper's ``*`` models and Shared++).
        shared_convs (Sequence[str], optional): convolutions of the non-first blocks that use shared bases.
            Default ``('conv1', 'conv2')`` for BasicBlock and ``('conv2',)`` for Bottleneck; ``('conv2',
            'conv3')`` gives ResNet-50 Shared++. An empty tuple gives a plain ResNet.
        deploy (bool): build the deploy structure (norms folded, plain convs); see :meth:`switch_to_deploy`.
        **kwargs: every argument of mmdet's ``ResNet`` (out_indices, frozen_stages, norm_cfg, norm_eval,
            with_cp, style, deep_stem, avg_down, init_cfg, ...). ``conv_cfg`` builds the ordinary
            convolutions (stem, first blocks, shortcuts); basis convolutions compute ``conv2d`` over the
            concatenated weights themselves and coefficients are plain ``nn.Conv2d``, so with shared
            convolutions only ``conv_cfg=None``/``dict(type='Conv2d')`` is accepted (ValueError otherwise).
            DCN (Bottleneck ``conv2``) is allowed when ``conv2`` is not shared; plugins only with
            ``shared_convs=()``. ``switch_to_deploy`` needs BatchNorm norms and plain convolutions.

    Output: a tuple of feature maps for ``out_indices`` (channels ``base_channels * 2**i * expansion``,
    strides 4, 8, 16, 32), as mmdet's ResNet.
    """

    def __init__(self,
                 depth: int,
                 shared_rank: Optional[int] = None,
                 unique_rank: int = 0,
                 rank_multipliers: Sequence[int] = (1, 2, 4, 8),
                 basis_sharing: str = 'stage',
                 shared_convs: Optional[Sequence[str]] = None,
                 deploy: bool = False,
                 **kwargs) -> None:
        self._validate(depth, shared_rank, unique_rank, rank_multipliers, basis_sharing, shared_convs, kwargs)
        block = self.arch_settings[depth][0]
        self.shared_rank = shared_rank
        self.unique_rank = unique_rank
        self.rank_multipliers = tuple(rank_multipliers)
        self.basis_sharing = basis_sharing
        self.shared_convs = tuple(_DEFAULT_SHARED[block] if shared_convs is None else shared_convs)
        self._stage_idx = 0
        super().__init__(depth, **kwargs)
        del self._stage_idx
        self.deploy = False
        if deploy:
            self.switch_to_deploy()

    # ------------------------------------------------------------------ validation
    def _validate(self, depth, shared_rank, unique_rank, rank_multipliers, basis_sharing, shared_convs,
                  kwargs) -> None:
        if depth not in self.arch_settings:
            raise ValueError(f'depth={depth!r} is not allowed: choose one of {sorted(self.arch_settings)}')
        if basis_sharing not in _SHARINGS:
            raise ValueError(f'basis_sharing={basis_sharing!r} is not allowed: choose one of {_SHARINGS}')
        block = self.arch_settings[depth][0]
        if shared_convs is not None:
            if isinstance(shared_convs, str) or not all(isinstance(c, str) for c in shared_convs):
                raise TypeError(f'shared_convs must be a sequence of conv names, got {shared_convs!r}')
            bad = [c for c in shared_convs if c not in _SHAREABLE[block]]
            if bad or len(set(shared_convs)) != len(shared_convs):
                raise ValueError(f'shared_convs={tuple(shared_convs)!r} is not allowed for depth {depth} '
                                 f'({block.__name__}): use distinct names from {_SHAREABLE[block]}')
        num_stages = kwargs.get('num_stages', 4)
        if not isinstance(num_stages, int) or not 1 <= num_stages <= 4:
            raise ValueError(f'num_stages={num_stages!r} is not allowed: it must be an integer in [1, 4]')
        if len(rank_multipliers) < num_stages or any(
                not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in rank_multipliers):
            raise ValueError(f'rank_multipliers={tuple(rank_multipliers)!r} is not allowed: it needs one positive '
                             f'integer per stage ({num_stages} stages)')
        if shared_rank is None:
            if unique_rank != 0:
                raise ValueError(f'unique_rank={unique_rank!r} needs a factorised basis: set shared_rank '
                                 '(shared_rank=None shares the whole convolution, without unique elements)')
        else:
            for name, value, low in (('shared_rank', shared_rank, 1), ('unique_rank', unique_rank, 0)):
                if not isinstance(value, int) or isinstance(value, bool) or value < low:
                    raise ValueError(f'{name}={value!r} is not allowed: it must be an integer >= {low} (and the '
                                     'scaled shared + unique rank at most the layer width)')
        strides = kwargs.get('strides', (1, 2, 2, 2))
        dilations = kwargs.get('dilations', (1, 1, 1, 1))
        if not isinstance(strides, Sequence) or not isinstance(dilations, Sequence) or \
                len(strides) != num_stages or len(dilations) != num_stages:
            raise ValueError(f'strides={strides!r} and dilations={dilations!r} need one entry per '
                             f'stage ({num_stages} stages)')
        out_indices = kwargs.get('out_indices', (0, 1, 2, 3))
        if not out_indices or any(not isinstance(i, int) or not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f'out_indices={tuple(out_indices)!r} is not allowed: use stage indices in '
                             f'[0, {num_stages - 1}]')
        frozen = kwargs.get('frozen_stages', -1)
        if not isinstance(frozen, int) or not -1 <= frozen <= num_stages:
            raise ValueError(f'frozen_stages={frozen!r} is not allowed: it must be an integer in [-1, {num_stages}]')
        style = kwargs.get('style', 'pytorch')
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"style={style!r} is not allowed: choose 'pytorch' or 'caffe'")
        if kwargs.get('init_cfg') and kwargs.get('pretrained'):
            raise ValueError('init_cfg and pretrained cannot be given together (pretrained is a deprecated '
                             "alias of init_cfg=dict(type='Pretrained', checkpoint=...))")
        for name in ('base_channels', 'in_channels', 'stem_channels'):
            value = kwargs.get(name, 3 if name == 'in_channels' else 64)
            if name == 'stem_channels' and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'{name}={value!r} is not allowed: it must be a positive integer')
        for name, values in (('strides', strides), ('dilations', dilations)):
            if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
                raise ValueError(f'{name}={tuple(values)!r} is not allowed: use positive integers')
        norm_cfg = kwargs.get('norm_cfg', dict(type='BN'))
        if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
            raise TypeError(f"norm_cfg={norm_cfg!r} is not allowed: give a dict with a 'type' (e.g. dict(type='BN'))")
        convs = _DEFAULT_SHARED[block] if shared_convs is None else tuple(shared_convs)
        conv_cfg = kwargs.get('conv_cfg')
        if conv_cfg is not None and (not isinstance(conv_cfg, dict) or conv_cfg.get('type') not in ('Conv', 'Conv2d')):
            if convs:
                raise ValueError(
                    f'conv_cfg={conv_cfg!r} is not allowed with shared convolutions: basis convolutions are plain '
                    "conv2d over [unique; shared] weights, so only conv_cfg=None or dict(type='Conv2d') keeps the "
                    'network consistent (other conv types are allowed with shared_convs=(), a plain ResNet)')
        self._validate_dcn_plugins(block, convs, num_stages, kwargs)
        base = kwargs.get('base_channels', 64)
        for i in range(num_stages):
            planes = base * 2**i
            self._stage_basis_ranks(block, convs, shared_rank, unique_rank, rank_multipliers[i], basis_sharing,
                                    planes * block.expansion, planes, i)

    @staticmethod
    def _validate_dcn_plugins(block, convs: Tuple[str, ...], num_stages: int, kwargs: dict) -> None:
        """DCN (on ``conv2`` of Bottleneck) and plugins are supported only where no block is shared."""
        dcn = kwargs.get('dcn')
        stage_with_dcn = kwargs.get('stage_with_dcn', (False, ) * 4)
        if dcn is not None:
            if not isinstance(dcn, dict):
                raise TypeError(f"dcn={dcn!r} is not allowed: give a dict (e.g. dict(type='DCNv2', "
                                'deform_groups=1)) or None')
            if len(stage_with_dcn) != num_stages or not all(isinstance(v, bool) for v in stage_with_dcn):
                raise ValueError(f'stage_with_dcn={tuple(stage_with_dcn)!r} is not allowed: it needs one bool per '
                                 f'stage ({num_stages} stages)')
            if any(stage_with_dcn) and block is BasicBlock:
                raise ValueError(f'dcn={dcn!r} is not allowed with BasicBlock (depth 18/34): mmdet supports DCN on '
                                 'Bottleneck only')
            if any(stage_with_dcn) and 'conv2' in convs:
                raise ValueError(f'dcn={dcn!r} with stage_with_dcn={tuple(stage_with_dcn)!r} is not allowed: DCN '
                                 f'replaces conv2, which is a shared convolution (shared_convs={convs}); use '
                                 'shared_convs without conv2 or stage_with_dcn=(False, ...)')
        plugins = kwargs.get('plugins')
        if plugins:
            if block is BasicBlock:
                raise ValueError(f'plugins={plugins!r} are not allowed with BasicBlock (depth 18/34): mmdet '
                                 'supports plugins on Bottleneck only')
            for plugin in plugins:
                stages = plugin.get('stages') if isinstance(plugin, dict) else None
                if not isinstance(plugin, dict) or (stages is not None and len(stages) != num_stages):
                    raise ValueError(f'plugin {plugin!r} is not allowed: give dict(cfg=..., position=..., '
                                     f'stages=<{num_stages} bools>)')
                if convs and (stages is None or any(stages)):
                    raise ValueError(f'plugin {plugin!r} is not allowed: plugins are not supported in stages with '
                                     f'shared blocks (shared_convs={convs}); use shared_convs=()')

    # ------------------------------------------------------------------ stages
    def make_res_layer(self, block, inplanes: int, planes: int, num_blocks: int, stride: int = 1,
                       dilation: int = 1, **kwargs) -> SharedBasisStage:
        """Build ``layer{i}``: an ordinary first block, then shared blocks using the stage's bases."""
        i = self._stage_idx
        self._stage_idx += 1
        plain, shared_cls = (PlainBasicBlock, SharedBasicBlock) if block is BasicBlock else \
            (PlainBottleneck, SharedBottleneck)
        avg_down = kwargs.pop('avg_down', False)
        first = ResLayer(plain, inplanes, planes, 1, stride=stride, avg_down=avg_down, dilation=dilation,
                         **kwargs)[0]
        stage = SharedBasisStage()
        stage.append(first)
        if num_blocks == 1:
            return stage
        inplanes = planes * block.expansion
        if not self.shared_convs:  # a plain ResNet stage
            for _ in range(1, num_blocks):
                stage.append(plain(inplanes, planes, stride=1, dilation=dilation, **kwargs))
            return stage
        shared = self._add_stage_bases(stage, i, block, inplanes, planes, dilation)
        unique = 0 if self.shared_rank is None else self.unique_rank * self.rank_multipliers[i]
        for _ in range(1, num_blocks):
            stage.append(
                shared_cls(inplanes, planes, shared, unique, self.shared_rank is not None, stride=1,
                           dilation=dilation, **kwargs))
        return stage

    @staticmethod
    def _conv_geometry(block, conv: str, inplanes: int, planes: int) -> Tuple[int, int, int]:
        """(in_channels, out_channels, kernel) of ``conv`` in a non-first block."""
        if block is BasicBlock:
            return planes, planes, 3
        return {'conv1': (inplanes, planes, 1), 'conv2': (planes, planes, 3),
                'conv3': (planes, planes * block.expansion, 1)}[conv]

    @classmethod
    def _stage_basis_ranks(cls, block, convs: Tuple[str, ...], shared_rank: Optional[int], unique_rank: int,
                           multiplier: int, basis_sharing: str, inplanes: int, planes: int,
                           stage_idx: int) -> Tuple[Dict[str, Tuple[int, int, int]], Dict[str, int]]:
        """Geometry ``(in, out, k)`` and shared rank of every shared conv of a stage; ValueError if invalid.

        The scaled rank ``(s + u) * multiplier`` must not exceed the conv's output width; ``'stage'``
        sharing needs every listed conv to have the same basis shape.
        """
        geo = {c: cls._conv_geometry(block, c, inplanes, planes) for c in convs}
        ranks = {}
        for c, (cin, cout, k) in geo.items():
            if shared_rank is None:
                ranks[c] = cout
                continue
            s, u = shared_rank * multiplier, unique_rank * multiplier
            if s + u > cout:
                raise ValueError(
                    f'shared_rank={shared_rank} and unique_rank={unique_rank} give a basis of rank {s}+{u}={s + u} '
                    f'in stage {stage_idx} ({c}), larger than the layer width {cout}: the rank must be at most '
                    'the width')
            ranks[c] = s
        if basis_sharing == 'stage':
            shapes = {(geo[c][0], geo[c][2], ranks[c]) for c in geo}
            if len(shapes) > 1:
                raise ValueError(f"basis_sharing='stage' needs convolutions of one shape, but shared_convs="
                                 f"{convs} have (in_channels, kernel, rank) {sorted(shapes)}: use "
                                 "basis_sharing='conv'")
        return geo, ranks

    def _add_stage_bases(self, stage: SharedBasisStage, i: int, block, inplanes: int, planes: int,
                         dilation: int) -> Dict[str, nn.Parameter]:
        geo, ranks = self._stage_basis_ranks(block, self.shared_convs, self.shared_rank, self.unique_rank,
                                             self.rank_multipliers[i], self.basis_sharing, inplanes, planes, i)
        if self.basis_sharing == 'stage':
            c0 = self.shared_convs[0]
            p = stage.add_shared_basis('shared_basis', ranks[c0], geo[c0][0], geo[c0][2],
                                       family=f'conv{geo[c0][2]}x{geo[c0][2]}')
            return {c: p for c in self.shared_convs}
        shared, first_of_shape = {}, {}
        for c in self.shared_convs:
            cin, _, k = geo[c]
            key = (cin, k)
            shared[c] = stage.add_shared_basis(f'shared_basis_{c}', ranks[c], cin, k, family=f'conv{k}x{k}',
                                               joint_with=first_of_shape.get(key))
            first_of_shape.setdefault(key, f'shared_basis_{c}')
        return shared

    def train(self, mode: bool = True) -> 'SharedBasisResNet':
        """mmdet's ``train`` (freezing, ``norm_eval``), returning ``self`` like ``nn.Module.train``."""
        super().train(mode)
        return self

    # ------------------------------------------------------------------ deploy
    def switch_to_deploy(self) -> None:
        """Fold every BatchNorm and turn every basis/factorised convolution into plain ``nn.Conv2d``.

        Factorised convolutions take the cheaper exact form (:func:`~mmbasis.models.layers.deploy_form`);
        the shared bases are folded into each block (per-layer BNs differ) and removed from the stages,
        so :meth:`basis_groups` is empty afterwards. Outputs equal the eval-mode training form.
        """
        if self.deploy:
            return
        if self.deep_stem:
            self.stem = _fuse_sequential(self.stem)
        else:
            self.conv1 = fuse_conv_norm(self.conv1, self.norm1)
            setattr(self, self.norm1_name, nn.Identity())
        for name in self.res_layers:
            stage = getattr(self, name)
            for blk in stage:
                blk.switch_to_deploy()
            stage.remove_shared_bases()
        self.deploy = True
        # New modules start trainable and in training mode: re-apply frozen_stages and the current mode.
        self.train(self.training)
