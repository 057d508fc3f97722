"""ResNet with deeply shared filter bases (paper Sec. 3; official ``models/ilsvrc/resnet.py``).

Every stage ``layer{i}`` is a :class:`~mmbasis.models.layers.SharedBasisStage` built from mmdet's own
``ResLayer``: its first block stays an ordinary block (it carries the stride and the projection shortcut);
in blocks ``2..n`` (the *shared blocks*) the convolutions listed in ``shared_convs`` are replaced by
convolutions over a filter basis owned by the stage, with the geometry of the convolution mmdet built:

* ``shared_rank`` an int (ResNet-18/34 "S{s}U{u}"): each listed convolution ``W: S -> T`` becomes
  ``[unique basis (u) ; shared basis (s)] -> BN -> 1x1 coefficients``, followed by the block's own BN (two
  BNs per factorised convolution, as in the official code). Ranks scale with ``rank_multipliers``
  (paper: x1, x2, x4, x8 over the four stages).
* ``shared_rank=None`` (ResNet-50/101 "Shared"/"Shared++", ShaResNet topology): the whole convolution is one
  tensor of the stage; the block's other 1x1 convolutions act as coefficients.

``basis_sharing='stage'``: one basis per stage for every listed convolution ("S{s}U{u}").
``basis_sharing='conv'``: one basis per stage and convolution position ("S{s}U{u}*", "Shared++"); bases of
one stage with the same shape are initialised and regularised jointly, bases of different kernel sizes
form separate families of the orthogonality regulariser.
"""

from typing import Dict, Optional, Sequence

import torch.nn as nn
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet.models.layers import ResLayer
from mmdet.registry import MODELS

from ...compat.mmdet_asserts import mmdet_argument_checks
from ...compat.mmdet_blocks import NonReentrantCheckpointMixin
from ...deploy.folding import fold_residual_block, fold_sequential, fuse_conv_norm
from ...utils.misc import check_bool, check_choice, check_distinct, check_int, is_int
from ..archs import RESNET, resolve_arch
from ..layers import BasisConv2d, FactorizedConv2d, SharedBasisBackboneMixin, SharedBasisStage

#: Convolutions of each block type that can use a stage basis, and the default ones (the paper's).
SHAREABLE = {BasicBlock: ('conv1', 'conv2'), Bottleneck: ('conv1', 'conv2', 'conv3')}
DEFAULT_SHARED = {BasicBlock: ('conv1', 'conv2'), Bottleneck: ('conv2',)}
#: The sharing arguments and their defaults (``shared_convs=None``: :data:`DEFAULT_SHARED` of the block type); an
#: ``arch`` sets them (:mod:`mmbasis.models.archs`).
SHARING_DEFAULTS = dict(
    depth=None, shared_rank=None, unique_rank=0, rank_multipliers=(1, 2, 4, 8), basis_sharing='stage', shared_convs=None
)


class _DeployableBlockMixin(NonReentrantCheckpointMixin):
    """Non-reentrant activation checkpointing (:mod:`mmbasis.compat.mmdet_blocks`) and deploy-mode folding for
    mmdet's residual blocks."""

    def switch_to_deploy(self) -> None:
        """Fold every norm into the convolution before it; shared/factorised convs become plain convs."""
        fold_residual_block(self)


class PlainBasicBlock(_DeployableBlockMixin, BasicBlock):
    """mmdet's BasicBlock with non-reentrant checkpointing and deploy folding."""


class PlainBottleneck(_DeployableBlockMixin, Bottleneck):
    """mmdet's Bottleneck with non-reentrant checkpointing and deploy folding."""


_DEPLOYABLE = {BasicBlock: PlainBasicBlock, Bottleneck: PlainBottleneck}


@MODELS.register_module()
class SharedBasisResNet(SharedBasisBackboneMixin, ResNet):
    """ResNet backbone with deeply shared filter bases.

    Build a paper model by name, ``SharedBasisResNet(arch='ResNet34-S48U1*')``, or give the sharing arguments
    explicitly (e.g. other ranks); an explicit sharing argument given with an arch replaces the arch's (``arch`` then
    becomes None: the backbone is not that paper model).

    Args:
        arch (str, optional): a ResNet of the paper (:data:`mmbasis.models.archs.PAPER_MODELS`), e.g.
            ``'ResNet34-S48U1*'``, ``'ResNet50-Shared++'``; it sets the sharing arguments below. The attribute
            ``arch`` is the paper model built (None when explicit arguments changed it).
        depth (int): 18, 34, 50, 101 or 152 (set by ``arch``).

    The sharing arguments are keyword only (defaults: :data:`SHARING_DEFAULTS`).

    Keyword Args:
        shared_rank (int, optional): ``s``, shared basis rank of stage 0 (scaled by ``rank_multipliers``).
            ``None`` shares the whole convolution (no factorisation; ``unique_rank`` must be 0).
        unique_rank (int): ``u``, unique basis rank of stage 0 (scaled by ``rank_multipliers``).
        rank_multipliers (Sequence[int]): per-stage rank multipliers. Default ``(1, 2, 4, 8)``.
        basis_sharing (str): ``'stage'`` (one basis per stage for every shared conv) or ``'conv'`` (one basis
            per stage and conv position: the paper's ``*`` models and Shared++).
        shared_convs (Sequence[str], optional): convolutions of the non-first blocks that use shared bases.
            Default ``('conv1', 'conv2')`` for BasicBlock and ``('conv2',)`` for Bottleneck; ``('conv2',
            'conv3')`` gives ResNet-50 Shared++; ``()`` a plain ResNet.

    Other Parameters:
        deploy (bool): build the deploy structure (norms folded, plain convs); see :meth:`switch_to_deploy`.
        deploy_forms (dict, optional): ``{factorised conv name: 'merged' | 'factorized'}``, the deploy forms
            chosen by measurement (a calibrated deploy checkpoint's ``meta['deploy_forms']``); the others follow
            the multiply-add rule. See :meth:`set_deploy_forms`.
        recompute_basis_norm (bool): in training, recompute each factorised convolution's normalised basis
            responses in the backward pass instead of storing them: the same outputs, gradients and running
            statistics with one map of ``R`` channels less per factorised convolution
            (:mod:`mmbasis.models.layers.recompute_norm`). Default False.
        **kwargs: every argument of mmdet's ``ResNet``, checked by mmdet (num_stages, strides, norm_cfg,
            norm_eval, with_cp, style, deep_stem, avg_down, zero_init_residual, init_cfg, ...);
            ``frozen_stages`` must be in ``[-1, num_stages]`` and ``out_indices`` distinct stage indices
            ``0 .. num_stages - 1`` (checked here: mmdet lets other values through).
            With shared convolutions, ``conv_cfg`` must be ``None``/``dict(type='Conv2d')`` (basis convolutions
            are plain ``conv2d`` over their weights), DCN may only replace an unshared ``conv2`` and plugins
            need ``shared_convs=()``.

    Output: a tuple of feature maps for ``out_indices`` (channels ``base_channels * 2**i * expansion``,
    strides 4, 8, 16, 32), as mmdet's ResNet.
    """

    def __init__(
        self,
        depth: Optional[int] = None,
        arch: Optional[str] = None,
        deploy: bool = False,
        deploy_forms: Optional[Dict[str, str]] = None,
        recompute_basis_norm: bool = False,
        **kwargs,
    ) -> None:
        given = {k: kwargs.pop(k) for k in SHARING_DEFAULTS if k in kwargs}
        if depth is not None:
            given['depth'] = depth
        sharing, arch = resolve_arch(RESNET, arch, given, SHARING_DEFAULTS)
        depth, shared_rank, unique_rank = sharing['depth'], sharing['shared_rank'], sharing['unique_rank']
        rank_multipliers, basis_sharing, shared_convs = (
            sharing['rank_multipliers'],
            sharing['basis_sharing'],
            sharing['shared_convs'],
        )
        if depth is None:
            raise ValueError(f'{RESNET} needs depth (18, 34, 50, 101 or 152) or an arch, e.g. arch="ResNet34-S48U1*"')
        block = self.arch_settings.get(depth, (None,))[0]  # an unknown depth is refused by mmdet below
        if shared_rank is None:
            if unique_rank != 0:
                raise ValueError(
                    f'unique_rank={unique_rank!r} needs a factorised basis: set shared_rank '
                    '(shared_rank=None shares the whole convolution, without unique elements)'
                )
        else:
            check_int('shared_rank', shared_rank, low=1)
            check_int('unique_rank', unique_rank, low=0)
        if (
            isinstance(rank_multipliers, str)
            or not isinstance(rank_multipliers, Sequence)
            or not all(is_int(m) and m >= 1 for m in rank_multipliers)
        ):
            raise ValueError(
                f'rank_multipliers={rank_multipliers!r} is not allowed: give one positive integer '
                'per stage, e.g. (1, 2, 4, 8)'
            )
        check_choice('basis_sharing', basis_sharing, ('stage', 'conv'))
        check_bool('deploy', deploy)
        check_bool('recompute_basis_norm', recompute_basis_norm)
        if block is not None:
            shared_convs = (
                DEFAULT_SHARED[block]
                if shared_convs is None
                else check_distinct('shared_convs', shared_convs, SHAREABLE[block])
            )
            self._check_conv_options(shared_convs, kwargs)
        self._check_frozen_stages(kwargs)
        self.arch = arch
        self.shared_rank = shared_rank
        self.unique_rank = unique_rank
        self.rank_multipliers = tuple(rank_multipliers)
        self.basis_sharing = basis_sharing
        self.shared_convs = shared_convs
        with mmdet_argument_checks("mmdet's ResNet", dict(depth=depth, **dict(sorted(kwargs.items())))):
            super().__init__(depth, **kwargs)
        self._check_out_indices()
        self.recompute_basis_norm = recompute_basis_norm
        for module in self.modules():
            if isinstance(module, FactorizedConv2d):
                module.recompute_norm = recompute_basis_norm
        self.deploy = False
        self.set_deploy_forms(deploy_forms)
        if deploy:
            self.switch_to_deploy()

    @staticmethod
    def _check_frozen_stages(kwargs: dict) -> None:
        """``frozen_stages`` in ``[-1, num_stages]``: mmdet does not check it and fails in its constructor with
        ``AttributeError: ... no attribute 'layer5'`` (an invalid ``num_stages`` is left to mmdet's own check)."""
        n, frozen = kwargs.get('num_stages', 4), kwargs.get('frozen_stages', -1)
        if is_int(n) and 1 <= n <= 4 and not (is_int(frozen) and -1 <= frozen <= n):
            raise ValueError(
                f'frozen_stages={frozen!r} is not allowed: it must be an integer in [-1, {n}] for {n} stages '
                f'(-1: nothing frozen, 0: the stem, i: the stem and layer1..layer{{i}})'
            )

    def _check_out_indices(self) -> None:
        """``out_indices`` below 0 or repeated, which mmdet lets through (a negative index gives no output)."""
        n = self.num_stages
        check_distinct(
            'out_indices',
            self.out_indices,
            range(n),
            allow_empty=False,
            hint=f'0-based indices of the {n} stages (layer1..layer{n})',
        )

    @staticmethod
    def _check_conv_options(shared_convs: Sequence[str], kwargs: dict) -> None:
        """conv_cfg, DCN and plugins cannot act on a convolution that is a shared basis."""
        if not shared_convs:
            return
        conv_cfg = kwargs.get('conv_cfg')
        if conv_cfg is not None and (not isinstance(conv_cfg, dict) or conv_cfg.get('type') not in ('Conv', 'Conv2d')):
            raise ValueError(
                f'conv_cfg={conv_cfg!r} is not allowed with shared convolutions: basis convolutions are '
                "plain conv2d over their weights; use conv_cfg=None or dict(type='Conv2d'), or "
                'shared_convs=() for a plain ResNet'
            )
        if kwargs.get('dcn') is not None and 'conv2' in shared_convs and any(kwargs.get('stage_with_dcn', ())):
            raise ValueError(
                f'dcn={kwargs["dcn"]!r} is not allowed where conv2 is shared (shared_convs='
                f'{tuple(shared_convs)}): DCN replaces conv2; share other convolutions or set '
                'stage_with_dcn=(False, ...)'
            )
        if kwargs.get('plugins'):
            raise ValueError(
                f'plugins={kwargs["plugins"]!r} are not allowed with shared convolutions (shared_convs='
                f'{tuple(shared_convs)}); use shared_convs=() for plugins'
            )

    # ------------------------------------------------------------------ stages
    def make_res_layer(self, block, inplanes: int, planes: int, num_blocks: int, **kwargs) -> SharedBasisStage:
        """Build ``layer{i}`` with mmdet's ``ResLayer``, then let the non-first blocks use the stage's bases."""
        stage = SharedBasisStage()
        stage.extend(ResLayer(_DEPLOYABLE[block], inplanes, planes, num_blocks, **kwargs))
        if self.shared_convs and num_blocks > 1:
            stage_idx = (planes // self.base_channels).bit_length() - 1  # mmdet: planes = base_channels * 2**i
            self._share_stage(stage, stage_idx, kwargs.get('norm_cfg', dict(type='BN')))
        return stage

    def _stage_ranks(self, stage_idx: int, conv: nn.Conv2d, conv_name: str) -> Dict[str, int]:
        """``{'s': shared rank, 'u': unique rank}`` of ``conv`` in stage ``stage_idx``; ValueError if too large."""
        if self.shared_rank is None:
            return dict(s=conv.out_channels, u=0)
        if stage_idx >= len(self.rank_multipliers):
            raise ValueError(
                f'rank_multipliers={self.rank_multipliers!r} is not allowed: it has no entry for stage '
                f'{stage_idx} (one positive integer per stage)'
            )
        m = self.rank_multipliers[stage_idx]
        s, u = self.shared_rank * m, self.unique_rank * m
        if s + u > conv.out_channels:
            raise ValueError(
                f'shared_rank={self.shared_rank} and unique_rank={self.unique_rank} give a basis of rank '
                f'{s}+{u}={s + u} in stage {stage_idx} ({conv_name}), larger than the layer width '
                f'{conv.out_channels}: the rank must be at most the width'
            )
        return dict(s=s, u=u)

    def _share_stage(self, stage: SharedBasisStage, stage_idx: int, norm_cfg: dict) -> None:
        """Create the stage's bases from the geometry of its second block's convs and install them in blocks 2..n."""
        factorized = self.shared_rank is not None
        bases: Dict[str, nn.Parameter] = {}
        first_of_shape: Dict[tuple, str] = {}
        unique = 0
        for name in self.shared_convs:
            conv = getattr(stage[1], name)
            ranks = self._stage_ranks(stage_idx, conv, name)
            unique = ranks['u']
            k = conv.kernel_size[0]
            shape = (conv.in_channels, k)
            if self.basis_sharing == 'stage':
                if bases:
                    first = stage.shared_basis
                    if (first.shape[0], *first.shape[1:3]) != (ranks['s'], *shape):
                        raise ValueError(
                            f"basis_sharing='stage' needs shared convolutions of one shape, but "
                            f'shared_convs={self.shared_convs} differ in (rank, in_channels, kernel): '
                            f"use basis_sharing='conv'"
                        )
                    bases[name] = first
                    continue
                basis_name = 'shared_basis'
            else:
                basis_name = f'shared_basis_{name}'
            bases[name] = stage.add_shared_basis(
                basis_name,
                ranks['s'],
                conv.in_channels,
                k,
                family=f'conv{k}x{k}',
                joint_with=first_of_shape.get(shape),
                init=False,
            )
            first_of_shape.setdefault(shape, basis_name)
        stage.reset_shared_bases()  # orthogonal init, once per group
        for blk in list(stage)[1:]:
            for name, basis in bases.items():
                conv = getattr(blk, name)
                setattr(
                    blk,
                    name,
                    FactorizedConv2d.like(conv, basis, unique, norm_cfg)
                    if factorized
                    else BasisConv2d.like(conv, basis),
                )

    def train(self, mode: bool = True) -> 'SharedBasisResNet':
        """mmdet's ``train`` (freezing, ``norm_eval``), returning ``self`` like ``nn.Module.train``."""
        super().train(mode)
        return self

    # ------------------------------------------------------------------ deploy
    def _stages(self):
        return [getattr(self, name) for name in self.res_layers]

    def _deploy_unshared_parts(self) -> None:
        if self.deep_stem:
            self.stem = fold_sequential(self.stem)
        else:
            self.conv1 = fuse_conv_norm(self.conv1, self.norm1)
            setattr(self, self.norm1_name, nn.Identity())
