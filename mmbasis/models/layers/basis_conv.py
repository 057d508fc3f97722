"""Convolutions built on filter bases (Kang & Kim, NeurIPS 2021, Sec. 3).

Notation (paper): a k x k convolution ``W: S -> T`` is replaced by

* a **filter basis** ``B = [B_unique ; B_shared]`` of rank ``R = u + s``: a k x k convolution
  ``S -> R`` whose first ``u`` output elements are layer-specific (``unique``) and whose last ``s``
  elements are a tensor shared by every repeated block of a stage (concatenation order as in the
  official code: unique first, then shared);
* a per-layer BatchNorm over the ``R`` basis responses;
* per-layer **coefficients** ``alpha``: a 1 x 1 convolution ``R -> T``.

:class:`BasisConv2d` is the basis alone (one convolution over the unique and shared weights together);
:class:`FactorizedConv2d` is basis -> norm -> coefficients. The shared tensor is *referenced*, never
registered, by these layers: it is registered exactly once, on the stage that owns it
(:class:`~mmbasis.models.layers.SharedBasisStage`).
"""

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor

from ...deploy.folding import basis_to_conv2d, fold_factorized
from .recompute_norm import applies, norm_then_coeff


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasisConv2d(nn.Module):
    """The filter basis ``B = [B_unique ; B_shared]`` applied as one convolution.

    Args:
        in_channels (int): ``S``, input channels.
        unique_rank (int): ``u``, number of layer-specific basis elements (may be 0).
        shared_basis (nn.Parameter, optional): the stage's shared basis, shape ``(s, S, k, k)``. It is
            kept as a reference (not registered here). ``None`` means an unshared basis of rank ``u``.
        kernel_size (int): ``k``. Must equal the shared basis' kernel size.
        stride, padding, dilation: as in :class:`torch.nn.Conv2d`.

    Shapes:
        input ``(N, S, H, W)`` -> output ``(N, u + s, H', W')``; the first ``u`` channels are the unique
        responses.
    """

    def __init__(
        self,
        in_channels: int,
        unique_rank: int,
        shared_basis: Optional[nn.Parameter] = None,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        k = _pair(kernel_size)
        if unique_rank < 0:
            raise ValueError(f'unique_rank must be >= 0, got {unique_rank}')
        if shared_basis is None and unique_rank == 0:
            raise ValueError('a basis needs at least one element: unique_rank is 0 and there is no shared basis')
        if shared_basis is not None:
            if shared_basis.dim() != 4 or shared_basis.shape[1] != in_channels or tuple(shared_basis.shape[2:]) != k:
                raise ValueError(
                    f'shared basis of shape {tuple(shared_basis.shape)} does not fit a {k[0]}x{k[1]} basis '
                    f'convolution with {in_channels} input channels (expected (s, {in_channels}, {k[0]}, {k[1]}))'
                )
        self.in_channels = in_channels
        self.kernel_size = k
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.unique_rank = unique_rank
        self.shared_rank = 0 if shared_basis is None else shared_basis.shape[0]
        # A tuple is not registered by nn.Module: the stage owns the shared tensor.
        self._shared = (shared_basis,) if shared_basis is not None else ()
        if unique_rank > 0:
            self.unique_basis = nn.Parameter(torch.empty(unique_rank, in_channels, *k))
        else:
            self.register_parameter('unique_basis', None)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal init of the unique basis (the stage initialises the shared one).

        Also makes mmcv's ``ConvModule.init_weights`` delegate here instead of initialising a ``weight``.
        """
        if self.unique_basis is not None:
            nn.init.kaiming_normal_(self.unique_basis, mode='fan_out', nonlinearity='relu')

    @classmethod
    def like(cls, conv: nn.Conv2d, shared_basis: nn.Parameter, unique_rank: int = 0) -> 'BasisConv2d':
        """A basis convolution with the geometry (input width, kernel, stride, padding, dilation) of ``conv``.

        With ``unique_rank=0`` and a basis of ``conv.out_channels`` elements it replaces the whole ``conv``.
        """
        return cls(
            conv.in_channels,
            unique_rank,
            shared_basis,
            conv.kernel_size[0],
            conv.stride[0],
            conv.padding[0],
            conv.dilation[0],
        )

    @property
    def shared_basis(self) -> Optional[nn.Parameter]:
        """The referenced shared basis ``(s, S, k, k)`` or ``None``."""
        return self._shared[0] if self._shared else None

    @property
    def rank(self) -> int:
        """``R = u + s``, the number of output channels."""
        return self.unique_rank + self.shared_rank

    @property
    def out_channels(self) -> int:
        return self.rank

    def full_weight(self) -> Tensor:
        """The full basis ``[B_unique ; B_shared]`` of shape ``(R, S, k, k)``."""
        if self.unique_basis is None:
            return self._shared[0]
        if not self._shared:
            return self.unique_basis
        return torch.cat((self.unique_basis, self._shared[0]), dim=0)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.full_weight(), None, self.stride, self.padding, self.dilation)

    def to_conv2d(self) -> nn.Conv2d:
        """An ordinary ``nn.Conv2d`` (no bias) with a copy of the current weights (deploy mode)."""
        return basis_to_conv2d(self)

    def extra_repr(self) -> str:
        return (
            f'{self.in_channels}, rank={self.rank} (unique={self.unique_rank}, shared={self.shared_rank}), '
            f'kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, '
            f'dilation={self.dilation}'
        )


class FactorizedConv2d(nn.Module):
    """Basis -> BatchNorm -> 1x1 coefficients: the paper's decomposed convolution ``S -> T``.

    Args:
        in_channels (int): ``S``.
        out_channels (int): ``T``.
        unique_rank (int): ``u``.
        shared_basis (nn.Parameter, optional): ``(s, S, k, k)``, referenced, not registered.
        norm_cfg (dict): the norm between basis and coefficients (over ``R`` channels).
        **geometry: ``kernel_size``, ``stride``, ``padding``, ``dilation`` of the basis convolution
            (:class:`BasisConv2d`'s defaults: a 3x3 convolution, stride 1, padding 1).

    Shapes:
        ``(N, S, H, W)`` -> ``(N, T, H', W')``. The norm after the coefficients belongs to the block
        (mmdet's ``bn1``/``bn2``), so that block code reads like mmdet's ResNet.

    Attributes:
        recompute_norm (bool): in training, recompute the normalised basis responses in the backward pass instead
            of storing them (:mod:`mmbasis.models.layers.recompute_norm`: exact, one map of ``R`` channels less
            per layer). Default False; the backbones' ``recompute_basis_norm`` sets it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        unique_rank: int,
        shared_basis: Optional[nn.Parameter] = None,
        norm_cfg: dict = dict(type='BN'),
        **geometry,
    ) -> None:
        super().__init__()
        self.basis = BasisConv2d(in_channels, unique_rank, shared_basis, **geometry)
        self.basis_norm = build_norm_layer(norm_cfg, self.basis.rank)[1]
        self.coeff = nn.Conv2d(self.basis.rank, out_channels, 1, bias=False)
        self.in_channels = in_channels
        self.out_channels = out_channels
        #: the deploy form :meth:`fuse` builds: ``None`` chooses by multiply-adds; ``'merged'`` or
        #: ``'factorized'`` forces one (set by measuring, see ``mmbasis.deploy.calibrate_deploy_forms``)
        self.forced_deploy_form: Optional[str] = None
        self.recompute_norm = False

    @classmethod
    def like(
        cls, conv: nn.Conv2d, shared_basis: Optional[nn.Parameter], unique_rank: int, norm_cfg: dict = dict(type='BN')
    ) -> 'FactorizedConv2d':
        """The factorised replacement of ``conv`` (same input/output widths and geometry)."""
        geometry = dict(
            kernel_size=conv.kernel_size[0], stride=conv.stride[0], padding=conv.padding[0], dilation=conv.dilation[0]
        )
        return cls(conv.in_channels, conv.out_channels, unique_rank, shared_basis, norm_cfg, **geometry)

    def forward(self, x: Tensor) -> Tensor:
        y = self.basis(x)
        if self.recompute_norm and applies(self.basis_norm, self.coeff):
            return norm_then_coeff(self.basis_norm, self.coeff, y)
        return self.coeff(self.basis_norm(y))

    def fuse(self, out_norm: Optional[nn.Module] = None) -> nn.Module:
        """Plain, bias-carrying convolutions computing ``out_norm(self(x))`` in eval mode, in the form
        ``forced_deploy_form`` or, when it is None, the one with fewer multiply-adds
        (:func:`mmbasis.deploy.folding.fold_factorized`)."""
        return fold_factorized(self, out_norm)
