"""Warm start from a plain pretrained ResNet: decompose it into a :class:`SharedBasisResNet` (no ImageNet run).

Exported names (``from .decompose import ...``)::

    PLAIN_LAYOUTS, extract_plain_backbone, load_plain_checkpoint, target_backbone_cfg, calibration_batch,
    decompose_resnet, decompose_checkpoint, format_report

Notation (paper Sec. 3): a convolution ``W_j: S -> T`` (``(T, S, k, k)``, flattened to ``(T, D)`` with
``D = S k^2``) of shared block ``j`` is followed by its BN with per-channel scale ``g_j = gamma / sqrt(var +
eps)``. What the network sees is the BN-scaled filter ``M_j = diag(g_j) W_j``, so every fit below minimises
the error of ``M_j`` (the effective conv+BN), and every reported weight error is
``||M_j - diag(g_j) What_j||_F / ||M_j||_F``.

* Factorised convolutions (``shared_rank`` an int, "S{s}U{u}"): ``W_j ~ C_j [U_j ; B]`` with the shared basis
  ``B`` (``s`` rows) of the stage, the unique basis ``U_j`` (``u`` rows) and the coefficients ``C_j``
  (``(T, u + s)``). All rows of ``[U_j ; B]`` are orthonormal (the bases of one regulariser group, e.g. the
  conv1 and conv2 bases of ResNet34-S48U1*, jointly), so ``C_j = W_j [U_j ; B]^T`` is the exact least-squares
  projection and the orthogonality regulariser starts at 0. ``B`` is fitted jointly to the ``M_j`` of every
  layer using it: candidates are the truncated SVD of the stacked ``M_j`` ("svd"), the top-``s`` directions of
  the summed projectors onto each layer's top ``s + u`` directions ("subspace": recovers a basis common to all
  layers even when it carries less energy than their unique parts), each refined by alternating minimisation
  ("+als": ``B`` -> top-``s`` right singular vectors of the stacked residuals ``M_j (I - U_j^T U_j)``,
  ``U_j`` -> top-``u`` right singular vectors of ``M_j (I - B^T B)``, each step one warm-started orthogonal
  iteration, so that no step increases the error). The candidate with the lowest measured error is kept.
  The block's own BN (``bn{k}``) stays the original one, since ``C_j [U_j ; B] x ~ W_j x``; the BN between
  basis and coefficients (``basis_norm``) is the identity in eval mode with statistics calibrated on a batch of
  inputs (``running_mean/var`` = mean/variance of the basis responses, ``weight = sqrt(var + eps)``,
  ``bias = mean``), so train-mode BN also starts near the identity.
* Whole shared convolutions (``shared_rank=None``: ResNet50/101-Shared, Shared++): one tensor ``V`` per stage
  basis, ``M_j ~ diag(alpha_j) V diag(beta_j)``. ``alpha_j`` (per output channel) is absorbed exactly into the
  block's BN after the conv; ``beta_j > 0`` (per input channel) into the BN before it where the input is
  ``relu(bn{k-1}(...))`` (conv2, conv3: ReLU commutes with positive scales), else ``beta_j = 1``. Candidates:
  the average of the ``M_j`` and each layer's own conv, each refined by alternating least squares; the lowest
  error is kept. ``V`` gets unit-norm rows (a free gauge, absorbed into ``alpha_j``).

Stem, first blocks and shortcuts are copied. The approximation is reported per layer (weights) and per stage
(outputs on the calibration batch: cumulative from the image, and of the stage alone on the plain stage input).
"""

import copy
import glob
import os.path as osp
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.backbones import SharedBasisResNet
from ..models.layers import BasisConv2d, FactorizedConv2d
from ..paper_models import PAPER_MODELS, paper_backbone_cfg, plain_counterpart
from ..utils import checkpoint_io
from ..utils.checkpoint_io import CheckpointFormatError, save_atomic
from ..utils.misc import brief, check_int

__all__ = [
    'PLAIN_LAYOUTS',
    'extract_plain_backbone',
    'load_plain_checkpoint',
    'target_backbone_cfg',
    'calibration_batch',
    'decompose_resnet',
    'decompose_checkpoint',
    'format_report',
]

#: Checkpoint layouts :func:`extract_plain_backbone` recognises (name -> how it is recognised).
PLAIN_LAYOUTS: Dict[str, str] = {
    'mmdet-detector': "mmdet detector: 'backbone.*' keys plus neck/head keys (e.g. 'neck.*', 'rpn_head.*')",
    'mm-classifier': "mmpretrain/mmcls classifier: 'backbone.*' keys plus 'head.*' keys",
    'mm-backbone': "mmdet/mmpretrain backbone: ResNet keys ('conv1.weight', 'layer1.0.conv1.weight', ...) with "
    "no prefix, or all under 'backbone.'",
    'torchvision': "torchvision ResNet: ResNet keys with no prefix plus the classifier 'fc.weight'/'fc.bias'",
}
_RESNET_KEY = 'layer1.0.conv1.weight'
_IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
_IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, mmdet/torchvision normalisation
_IMAGENET_STD = (58.395, 57.12, 57.375)
_TINY = 1e-12


# ============================================================================================ source checkpoints
def _accepted() -> str:
    return '; '.join(f'{k}: {v}' for k, v in PLAIN_LAYOUTS.items()) + " (each optionally with 'module.' prefixes)"


def extract_plain_backbone(state_dict: Mapping[str, Tensor]) -> Tuple['OrderedDict[str, Tensor]', str]:
    """The ResNet backbone part of a state dict of any layout in :data:`PLAIN_LAYOUTS`.

    Args:
        state_dict: a checkpoint's state dict (``module.`` prefixes are removed).

    Returns:
        ``(backbone_state_dict, layout)``: keys relative to the backbone (``conv1.weight``, ``layer1.0.bn1.bias``,
        ...), the classifier/neck/heads dropped; ``layout`` is a key of :data:`PLAIN_LAYOUTS`.

    Raises:
        CheckpointFormatError: no ResNet backbone in a known layout; the message lists what was found.
    """
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise CheckpointFormatError(
            f'expected a non-empty state dict, found {type(state_dict).__name__} '
            f'{"(empty)" if isinstance(state_dict, Mapping) else ""}; accepted: {_accepted()}'
        )
    sd = checkpoint_io.strip_module_prefix(state_dict)
    tops = sorted({k.split('.', 1)[0] for k in sd})
    if 'backbone' in tops:
        others = [t for t in tops if t not in ('backbone', 'data_preprocessor')]
        layout = (
            'mm-backbone'
            if not others
            else 'mm-classifier'
            if set(others) <= {'head', 'neck'} and 'head' in others
            else 'mmdet-detector'
        )
        backbone = OrderedDict((k[len('backbone.') :], v) for k, v in sd.items() if k.startswith('backbone.'))
        if _RESNET_KEY not in backbone:
            raise CheckpointFormatError(
                f"the 'backbone.' keys are not a ResNet (no 'backbone.{_RESNET_KEY}'); found backbone keys "
                f'{brief(backbone)}'
            )
        return backbone, layout
    if _RESNET_KEY in sd:
        if 'fc.weight' in sd:
            return OrderedDict((k, v) for k, v in sd.items() if not k.startswith('fc.')), 'torchvision'
        return sd, 'mm-backbone'
    raise CheckpointFormatError(
        f'no plain ResNet backbone found: the keys are {brief(sd)} (top-level names '
        f'{brief(tops)}); accepted layouts: {_accepted()}'
    )


def load_plain_checkpoint(path: str) -> Tuple['OrderedDict[str, Tensor]', str]:
    """Load ``path`` with ``torch.load(weights_only=True)`` -> ``(backbone_state_dict, layout)``.

    Raises:
        FileNotFoundError: ``path`` is missing.
        CheckpointFormatError: not a PyTorch checkpoint, or no plain ResNet in it (see :func:`extract_plain_backbone`).
    """
    state_dict, _ = checkpoint_io.split_checkpoint(checkpoint_io.load_weights_only(path), path)
    try:
        return extract_plain_backbone(state_dict)
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f'{str(path)!r}: {e}') from None


def _resnet_arch(sd: Mapping[str, Tensor]) -> Tuple[str, Tuple[int, ...]]:
    """``(block type, blocks per stage)`` of a plain ResNet state dict."""
    counts = []
    while True:
        idx = {int(m[1]) for k in sd for m in [re.match(rf'layer{len(counts) + 1}\.(\d+)\.', k)] if m}
        if not idx:
            break
        counts.append(max(idx) + 1)
    return ('Bottleneck' if 'layer1.0.conv3.weight' in sd else 'BasicBlock'), tuple(counts)


def _arch_name(block: str, counts: Sequence[int]) -> str:
    from mmdet.models.backbones import ResNet

    depth = [d for d, (b, c) in ResNet.arch_settings.items() if b.__name__ == block and tuple(c) == tuple(counts)]
    return (
        f'ResNet-{depth[0]} ({block}, blocks per stage {tuple(counts)})'
        if depth
        else f'a ResNet with {block}s, blocks per stage {tuple(counts)}'
    )


def _match_plain(sd: Mapping[str, Tensor], plain: nn.Module) -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """Check ``sd`` against the plain reference backbone; return its complete state dict and the dropped keys.

    Keys of stages the target does not have (``num_stages`` < 4) are dropped; a missing ``num_batches_tracked``
    (old torchvision files) starts at 0.
    """
    block, counts = _resnet_arch(sd)
    want = (plain.block.__name__, tuple(plain.stage_blocks))
    if (block, counts[: len(want[1])]) != want:
        raise CheckpointFormatError(
            f'the plain checkpoint is {_arch_name(block, counts)}, but the target needs '
            f'{_arch_name(*want)}: choose a target of the depth of the checkpoint (or a '
            'checkpoint of the depth of the target)'
        )
    expected = plain.state_dict()
    dropped = [
        k
        for k in sd
        if k not in expected and re.match(r'layer(\d+)\.', k) and int(re.match(r'layer(\d+)\.', k)[1]) > len(want[1])
    ]
    unexpected = [k for k in sd if k not in expected and k not in dropped]
    missing = [k for k in expected if k not in sd and not k.endswith('num_batches_tracked')]
    mismatched = [
        f'{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    problems = [
        f'{what}: {brief(keys)}'
        for what, keys in (
            ('unexpected keys', unexpected),
            ('missing keys', missing),
            ('shape mismatches (checkpoint vs target)', mismatched),
        )
        if keys
    ]
    if problems:
        hint = (
            ' It is already a shared-basis checkpoint.'
            if any('basis' in k for k in unexpected)
            else ' Check base_channels/stem_channels/deep_stem/avg_down of the target against the checkpoint.'
        )
        raise CheckpointFormatError(
            'the backbone weights are not a plain ResNet matching the target: ' + '; '.join(problems) + '.' + hint
        )
    out = OrderedDict()
    for k, v in expected.items():
        out[k] = sd[k] if k in sd else torch.zeros_like(v)
    return out, dropped


# ============================================================================================ target backbone
def target_backbone_cfg(arch: Optional[str] = None, backbone_cfg: Optional[Mapping] = None) -> dict:
    """The config of the target :class:`SharedBasisResNet`, from a paper name or a config dict (exactly one).

    ``init_cfg``/``pretrained`` are removed (the decomposed checkpoint becomes the pretrained weights).

    Raises:
        ValueError: both or neither given, an unknown or non-ResNet paper name, a config that is not a dict with
            ``type='SharedBasisResNet'`` or has ``deploy=True``.
    """
    if (arch is None) == (backbone_cfg is None):
        raise ValueError('give exactly one of arch (a paper name) and backbone_cfg (a SharedBasisResNet config)')
    if arch is not None:
        resnets = [n for n, m in PAPER_MODELS.items() if m.backbone.get('type') == 'SharedBasisResNet']
        if arch not in resnets:
            raise ValueError(
                f'arch={arch!r} is not allowed: choose a paper ResNet model, one of {", ".join(resnets)} '
                '(or give a SharedBasisResNet config)'
            )
        return paper_backbone_cfg(arch)
    if not isinstance(backbone_cfg, Mapping) or 'type' not in backbone_cfg:
        raise ValueError(f"backbone_cfg={backbone_cfg!r} is not allowed: give a dict with type='SharedBasisResNet'")
    cfg = _plain_types(backbone_cfg)
    btype = str(cfg['type'])  # a class was turned into its name
    if btype.rsplit('.', maxsplit=1)[-1] != 'SharedBasisResNet':
        raise ValueError(
            f'the target backbone type {btype!r} is not allowed: only SharedBasisResNet backbones can '
            "be the target (e.g. dict(type='SharedBasisResNet', depth=18, shared_rank=16, unique_rank=1))"
        )
    if cfg.get('deploy'):
        raise ValueError(
            'deploy=True is not allowed for the target: decompose into the training form, then use '
            'tools/model_converters/switch_to_deploy.py'
        )
    for key in ('init_cfg', 'pretrained'):
        cfg.pop(key, None)
    cfg['type'] = 'SharedBasisResNet'
    return cfg


def _plain_types(obj):
    """A copy of a config made of dict/list/tuple/str/int/float/bool/None (loads with ``weights_only``)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain_types(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain_types(v) for v in obj) if type(obj) in (list, tuple) else list(map(_plain_types, obj))
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return getattr(obj, '__name__', str(obj))


def _build_target(cfg: dict) -> SharedBasisResNet:
    from mmdet.registry import MODELS

    try:
        model = MODELS.build(copy.deepcopy(cfg))
    except Exception as e:  # the registry wraps constructor errors; the message is what matters
        raise ValueError(f'cannot build the target backbone {cfg!r}: {e}') from None
    if not isinstance(model, SharedBasisResNet):
        raise ValueError(f'the target backbone is a {type(model).__name__}, not a SharedBasisResNet')
    bad = [
        n
        for n, m in model.named_modules()
        if 'norm' in type(m).__name__.lower()
        and (not isinstance(m, _BatchNorm) or not m.affine or m.running_var is None)
    ]
    if bad:
        raise ValueError(
            f'the target needs affine BatchNorm layers with running statistics (norm_cfg BN/SyncBN); '
            f'these are not: {brief(bad)}'
        )
    return model


def _build_plain(cfg: dict) -> nn.Module:
    """mmdet's plain ResNet with the target's geometry (the function of the source checkpoint)."""
    from mmdet.registry import MODELS

    plain = plain_counterpart(cfg)
    plain.pop('init_cfg', None)
    plain.pop('pretrained', None)
    return MODELS.build(plain)


# ============================================================================================ linear algebra
def _complement(rows: Optional[Tensor], dim: int, like: Tensor) -> Tensor:
    """Orthonormal rows ``(dim - e, dim)`` orthogonal to the orthonormal ``rows`` ``(e, dim)``."""
    if rows is None or rows.shape[0] == 0:
        return torch.eye(dim, dtype=like.dtype)
    q, _ = torch.linalg.qr(rows.T, mode='complete')
    return q[:, rows.shape[0] :].T


def _top_rows(x: Tensor, k: int, exclude: Optional[Tensor] = None) -> Tensor:
    """Top-``k`` right singular vectors ``(k, d)`` of ``x`` ``(n, d)`` orthogonal to the orthonormal ``exclude``.

    Rows are orthonormal. Computed from the eigenvectors of the smaller Gram matrix (``x x^T`` or ``x^T x``;
    several times faster than ``torch.linalg.svd`` on the CPU). When fewer than ``k`` directions carry energy,
    the rest are completed inside the orthogonal complement of ``exclude`` (they carry none).
    """
    if k == 0:
        return x.new_zeros(0, x.shape[1])
    x = _project_out(x, exclude)
    n, d = x.shape
    evals, evecs = torch.linalg.eigh(x @ x.T if n < d else x.T @ x)  # ascending
    m = min(k, evals.numel())
    top = evecs[:, -m:].flip(1).T  # descending; left singular vectors when n < d, else right ones
    top = top @ x if n < d else top
    ok = evals.flip(0)[:m] > max(1e-12 * float(evals[-1]), _TINY)
    top = _project_out(top[ok], exclude)  # drop directions without energy; re-orthogonalise (round-off)
    top = torch.linalg.qr(top.T)[0].T if top.shape[0] else top
    if top.shape[0] == k:
        return top
    fixed = torch.cat([exclude, top]) if exclude is not None and exclude.shape[0] else top
    comp = _complement(fixed, d, x)
    if comp.shape[0] < k - top.shape[0]:
        raise ValueError(
            f'cannot find {k} orthonormal basis elements in a space of dimension {d - fixed.shape[0] + top.shape[0]}'
        )
    return torch.cat([top, comp[: k - top.shape[0]]])


def _project_out(rows: Tensor, exclude: Optional[Tensor]) -> Tensor:
    """``rows (I - exclude^T exclude)``: the rows without their components along the orthonormal ``exclude``."""
    return rows if exclude is None or exclude.shape[0] == 0 else rows - (rows @ exclude.T) @ exclude


def _power_step(x: Tensor, rows: Tensor, exclude: Optional[Tensor] = None) -> Tensor:
    """One step of orthogonal iteration towards the top right singular vectors of ``x`` orthogonal to ``exclude``.

    Warm-started at ``rows`` ``(k, d)`` (projected onto the allowed space first); for the positive semi-definite
    ``x^T x`` the captured energy ``||x rows^T||^2`` never decreases. Falls back to the exact
    :func:`_top_rows` when the warm start has lost rank.
    """
    k = rows.shape[0]
    if k == 0:
        return rows
    y = _project_out(rows, exclude)
    y = _project_out((x @ y.T).T @ x, exclude)
    q, r = torch.linalg.qr(y.T)
    diag = r.diagonal().abs()
    if diag.max() <= _TINY or diag.min() <= 1e-9 * diag.max():
        return _top_rows(x, k, exclude)
    return q.T


@dataclass
class _GroupFit:
    bases: List[Tensor]  # B_b (s_b, r) per basis of the group
    uniques: List[Tensor]  # U_j (u, r) per layer
    history: List[float]  # squared error (sum over the layers) after the initialisation and each refinement step


def _fit_group(
    xs: List[Tensor], owner: List[int], ranks: List[int], u: int, init: str, iters: int, tol: float = 1e-3
) -> _GroupFit:
    """Fit orthonormal shared bases ``B_b`` (jointly orthogonal) and unique bases ``U_j`` to the filters ``xs``.

    Args:
        xs: BN-scaled filters ``M_j`` ``(T_j, r)`` of the layers.
        owner: index of the basis layer ``j`` uses.
        ranks: ``s_b`` per basis.
        u: unique rank ``u`` (per layer).
        init: ``'svd'`` (top directions of the stacked filters) or ``'subspace'`` (of the stacked top ``s + u``
            directions of each layer, each with weight 1).
        iters: alternating refinement steps, each one orthogonal-iteration step for every ``B_b`` (on the
            stacked residuals ``M_j (I - U_j^T U_j)``, orthogonal to the other bases) and every ``U_j`` (on
            ``M_j``, orthogonal to its ``B_b``), warm-started at the current values so that no step increases
            the error. Stops early when a step lowers the error by less than ``tol`` (relative).
    """
    members = [[j for j, o in enumerate(owner) if o == b] for b in range(len(ranks))]
    bases: List[Tensor] = []
    for b, s in enumerate(ranks):
        stack = [xs[j] if init == 'svd' else _top_rows(xs[j], s + u) for j in members[b]]
        bases.append(_top_rows(torch.cat(stack), s, torch.cat(bases) if bases else None))
    uniques = [_top_rows(x, u, bases[owner[j]]) for j, x in enumerate(xs)]

    energy = float(sum(x.pow(2).sum() for x in xs))

    def error() -> float:  # ||X (I - Q^T Q)||^2 = ||X||^2 - ||X Q^T||^2 for orthonormal Q
        kept = sum((x @ uniques[j].T).pow(2).sum() + (x @ bases[owner[j]].T).pow(2).sum() for j, x in enumerate(xs))
        return max(energy - float(kept), 0.0)

    history = [error()]
    for _ in range(iters):
        for b in range(len(ranks)):
            others = [bases[c] for c in range(len(ranks)) if c != b]
            stack = torch.cat([_project_out(xs[j], uniques[j]) for j in members[b]])
            bases[b] = _power_step(stack, bases[b], torch.cat(others) if others else None)
            for j in members[b]:
                uniques[j] = _power_step(xs[j], uniques[j], bases[b])
        history.append(error())
        if history[-2] - history[-1] <= tol * history[-2]:
            break
    return _GroupFit(bases, uniques, history)


@dataclass
class _WholeFit:
    v: Tensor  # V (T, S, K), unit-norm rows
    alphas: List[Tensor]  # alpha_j (T,)
    betas: List[Tensor]  # beta_j (S,), ones where not absorbable
    history: List[float]


def _fit_whole(ms: List[Tensor], absorbable: List[bool], v: Tensor, iters: int, tol: float = 1e-6) -> _WholeFit:
    """Alternating least squares for ``M_j ~ diag(alpha_j) V diag(beta_j)`` from the initial ``V``.

    ``ms``: BN-scaled filters ``(T, S, K)``; ``beta_j`` is fitted (positive) only where ``absorbable[j]``.
    With ``iters=0`` only ``alpha_j`` is fitted (``beta_j = 1``).
    """
    betas = [torch.ones(m.shape[1], dtype=m.dtype) for m in ms]

    def fit_alphas() -> List[Tensor]:
        out = []
        for m, beta in zip(ms, betas):
            p = v * beta.view(1, -1, 1)
            den = p.pow(2).sum((1, 2))
            out.append(torch.where(den > _TINY, (m * p).sum((1, 2)) / den.clamp_min(_TINY), torch.zeros_like(den)))
        return out

    def error() -> float:
        return float(
            sum((m - a.view(-1, 1, 1) * v * bt.view(1, -1, 1)).pow(2).sum() for m, a, bt in zip(ms, alphas, betas))
        )

    alphas = fit_alphas()
    history = [error()]
    for _ in range(iters):
        num = sum(a.view(-1, 1, 1) * bt.view(1, -1, 1) * m for m, a, bt in zip(ms, alphas, betas))
        den = sum((a.view(-1, 1, 1) * bt.view(1, -1, 1)).pow(2) for a, bt in zip(alphas, betas))
        v = torch.where(den > _TINY, num / den.clamp_min(_TINY), v)
        for j, m in enumerate(ms):
            if absorbable[j]:
                q = alphas[j].view(-1, 1, 1) * v
                den_b = q.pow(2).sum((0, 2))
                new = torch.where(den_b > _TINY, (m * q).sum((0, 2)) / den_b.clamp_min(_TINY), betas[j])
                betas[j] = new.clamp_min(1e-3)
        if all(absorbable):  # gauge: geometric mean 1 of every input channel's scales
            gm = torch.stack(betas).log().mean(0).exp()
            betas = [bt / gm for bt in betas]
            v = v * gm.view(1, -1, 1)
        alphas = fit_alphas()
        history.append(error())
        if history[-2] - history[-1] <= tol * max(history[-2], _TINY):
            break
    norms = v.flatten(1).norm(dim=1).clamp_min(_TINY)  # gauge: unit-norm rows of V
    return _WholeFit(v / norms.view(-1, 1, 1), [a * norms for a in alphas], betas, history)


# ============================================================================================ decomposition
@dataclass
class _Layer:
    """One convolution of a shared block that uses a stage basis."""

    key: str  # 'layer3.1.conv2'
    basis: str  # qualified shared basis name, 'layer3.shared_basis_conv2'
    bn: str  # 'layer3.1.bn2'
    prev_bn: Optional[str]  # 'layer3.1.bn1' when the input is relu(prev_bn(...)) (conv2, conv3), else None
    module: nn.Module  # FactorizedConv2d or BasisConv2d of the target
    weight: Tensor  # W_j (T, S, k, k), float64
    scale: Tensor  # g_j (T,), float64


def _shared_layers(stage_name: str, stage: nn.Module, plain: nn.Module, basis_names: Dict[int, str]) -> List[_Layer]:
    layers = []
    for j, blk in enumerate(stage):
        for k in (1, 2, 3):
            conv = getattr(blk, f'conv{k}', None)
            param = (
                conv.basis.shared_basis
                if isinstance(conv, FactorizedConv2d)
                else conv.shared_basis
                if isinstance(conv, BasisConv2d)
                else None
            )
            if param is None:
                continue
            key = f'{stage_name}.{j}.conv{k}'
            bn_name = getattr(blk, f'norm{k}_name')
            bn = plain.get_submodule(f'{stage_name}.{j}.{bn_name}')
            scale = bn.weight.detach().double() / (bn.running_var.detach().double() + bn.eps).sqrt()
            prev = f'{stage_name}.{j}.{getattr(blk, f"norm{k - 1}_name")}' if k > 1 else None
            layers.append(
                _Layer(
                    key,
                    basis_names[id(param)],
                    f'{stage_name}.{j}.{bn_name}',
                    prev,
                    conv,
                    plain.get_submodule(key).weight.detach().double(),
                    scale,
                )
            )
    return layers


def _rel(err2: float, ref2: float) -> float:
    return float((err2 / ref2) ** 0.5) if ref2 > 0 else 0.0


def _decompose_factorised(
    layers: List[_Layer],
    groups: List[List[str]],
    out: Dict[str, Tensor],
    als_iters: int,
    sums: List[Tuple[float, float]],
) -> Tuple[List[dict], List[dict]]:
    """Fit every basis group of a stage; write bases, unique bases and coefficients into ``out``.

    Returns the report rows of the layers and of the groups; appends ``(||M_j - Mhat_j||^2, ||M_j||^2)`` of every
    layer to ``sums``.
    """
    layer_rows, group_rows = [], []
    for names in groups:
        users = [la for la in layers if la.basis in names]
        if not users:
            continue
        ms = [la.scale.view(-1, 1) * la.weight.flatten(1) for la in users]  # M_j (T, D)
        dim, u = ms[0].shape[1], users[0].module.basis.unique_rank
        ranks = [int(out[n].shape[0]) for n in names]
        if sum(ranks) + u > dim:
            raise ValueError(
                f'the bases {names} need {sum(ranks)} shared + {u} unique orthonormal elements but '
                f'the filters have only S*k*k={dim} dimensions: lower shared_rank/unique_rank'
            )
        stack = torch.cat(ms)
        # orthonormal coordinates (r, D) of a space holding every M_j: fewer columns when sum T_j < D
        coords = torch.linalg.qr(stack.T)[0].T if stack.shape[0] < dim else torch.eye(dim, dtype=stack.dtype)
        xs = [m @ coords.T for m in ms]
        owner = [names.index(la.basis) for la in users]
        candidates = {}
        for init in ('svd', 'subspace'):
            fit = _fit_group(xs, owner, ranks, u, init, als_iters)
            candidates[init] = (fit.history[0], None)
            if als_iters:
                candidates[f'{init}+als'] = (fit.history[-1], fit)
            else:
                candidates[init] = (fit.history[0], fit)
        method = min((c for c in candidates if candidates[c][1] is not None), key=lambda c: candidates[c][0])
        fit = candidates[method][1]
        total = float(sum(m.pow(2).sum() for m in ms))
        for b, name in enumerate(names):
            out[name] = (fit.bases[b] @ coords).view_as(out[name]).float()
        for j, la in enumerate(users):
            q = torch.cat([fit.uniques[j], fit.bases[owner[j]]]) @ coords  # [U_j ; B] (R, D), orthonormal
            coeff = la.weight.flatten(1) @ q.T  # C_j = W_j [U_j ; B]^T (T, R)
            if u:
                out[f'{la.key}.basis.unique_basis'] = fit.uniques[j].mm(coords).view(u, *la.weight.shape[1:]).float()
            out[f'{la.key}.coeff.weight'] = coeff.view(*coeff.shape, 1, 1).float()
            err = float((ms[j] - la.scale.view(-1, 1) * (coeff @ q)).pow(2).sum())
            sums.append((err, float(ms[j].pow(2).sum())))
            layer_rows.append(
                dict(
                    name=la.key,
                    basis=la.basis,
                    kind='factorised',
                    shape=list(la.weight.shape),
                    rank=[ranks[owner[j]], u],
                    weight_error=_rel(err, ms[j].pow(2).sum()),
                )
            )
        group_rows.append(
            dict(
                bases=list(names),
                users=len(users),
                method=method,
                candidates={c: _rel(e, total) for c, (e, _) in candidates.items()},
                iterations=len(fit.history) - 1 if method.endswith('als') else 0,
                weight_error=_rel(candidates[method][0], total),
            )
        )
    return layer_rows, group_rows


def _set_bn_scale(out: Dict[str, Tensor], bn: str, alpha: Tensor, scale: Tensor, eps: float) -> None:
    """Rewrite BN ``bn`` after ``W ~ diag(alpha / scale) V`` so that ``bn'(V x) == alpha * V x + shift`` (eval).

    With ``a = alpha / scale`` the raw response of ``V`` is the original one divided by ``a``: running mean and
    variance are rescaled so that train-mode statistics stay consistent; ``a = 1`` where it is undefined.
    """
    mean, var = out[f'{bn}.running_mean'].double(), out[f'{bn}.running_var'].double()
    shift = out[f'{bn}.bias'].double() - scale * mean  # bn(y) = scale * y + shift
    ok = (scale.abs() > _TINY) & (alpha.abs() > _TINY)
    a = torch.where(ok, alpha / torch.where(ok, scale, torch.ones_like(scale)), torch.ones_like(alpha))
    mean, var = mean / a, var / a.pow(2)
    gamma = alpha * (var + eps).sqrt()
    out[f'{bn}.running_mean'], out[f'{bn}.running_var'] = mean.float(), var.float()
    out[f'{bn}.weight'], out[f'{bn}.bias'] = gamma.float(), (shift + alpha * mean).float()


def _decompose_whole(
    layers: List[_Layer], out: Dict[str, Tensor], eps: Dict[str, float], als_iters: int, sums: List[Tuple[float, float]]
) -> Tuple[List[dict], List[dict]]:
    """Give every whole-conv basis of a stage the best single convolution; rewrite the BNs around it.

    Returns and appends to ``sums`` as :func:`_decompose_factorised`.
    """
    layer_rows, group_rows, input_scales = [], [], []
    for name in dict.fromkeys(la.basis for la in layers):
        users = [la for la in layers if la.basis == name]
        ms = [la.scale.view(-1, 1, 1) * la.weight.flatten(2) for la in users]  # M_j (T, S, K)
        absorbable = [la.prev_bn is not None for la in users]
        total = float(sum(m.pow(2).sum() for m in ms))
        inits = {'mean': sum(ms) / len(ms)}
        inits.update({f'copy {la.key}': m for la, m in zip(users, ms)})
        candidates = {}
        for init, v0 in inits.items():
            candidates[init] = _fit_whole(ms, absorbable, v0, 0)
            if als_iters:
                candidates[f'{init}+als'] = _fit_whole(ms, absorbable, v0, als_iters)
        method = min(candidates, key=lambda c: candidates[c].history[-1])
        fit = candidates[method]
        out[name] = fit.v.view_as(out[name]).float()
        for la, m, alpha, beta in zip(users, ms, fit.alphas, fit.betas):
            err = float((m - alpha.view(-1, 1, 1) * fit.v * beta.view(1, -1, 1)).pow(2).sum())
            sums.append((err, float(m.pow(2).sum())))
            _set_bn_scale(out, la.bn, alpha, la.scale, eps[la.bn])
            if la.prev_bn is not None:
                input_scales.append((la.prev_bn, beta))
            layer_rows.append(
                dict(
                    name=la.key,
                    basis=name,
                    kind='whole',
                    shape=list(la.weight.shape),
                    rank=None,
                    weight_error=_rel(err, m.pow(2).sum()),
                    input_scales=la.prev_bn is not None,
                )
            )
        best_copy = min(
            (c for c in candidates if c.startswith('copy') and not c.endswith('als')),
            key=lambda c: candidates[c].history[-1],
        )
        shown = dict.fromkeys(['mean', best_copy] + (['mean+als', f'{best_copy}+als'] if als_iters else []) + [method])
        group_rows.append(
            dict(
                bases=[name],
                users=len(users),
                method=method,
                candidates={c: _rel(candidates[c].history[-1], total) for c in shown},
                iterations=len(fit.history) - 1,
                weight_error=_rel(fit.history[-1], total),
            )
        )
    for bn, beta in input_scales:  # after every output rewrite: the input scales multiply the whole BN output
        out[f'{bn}.weight'] = (out[f'{bn}.weight'].double() * beta).float()
        out[f'{bn}.bias'] = (out[f'{bn}.bias'].double() * beta).float()
    return layer_rows, group_rows


@torch.no_grad()
def _calibrate_basis_norms(model: SharedBasisResNet, out: Dict[str, Tensor], inputs: Tensor) -> None:
    """``basis_norm`` of every factorised conv := identity in eval mode, with the statistics of its responses."""
    convs = {n: m for n, m in model.named_modules() if isinstance(m, FactorizedConv2d)}
    for n, m in convs.items():  # identity without statistics, for the calibration pass
        r, eps = m.basis.rank, m.basis_norm.eps
        out[f'{n}.basis_norm.running_mean'], out[f'{n}.basis_norm.running_var'] = torch.zeros(r), torch.ones(r)
        out[f'{n}.basis_norm.weight'], out[f'{n}.basis_norm.bias'] = torch.full((r,), (1 + eps) ** 0.5), torch.zeros(r)
        out[f'{n}.basis_norm.num_batches_tracked'] = torch.tensor(0)
    model.load_state_dict(out, strict=True)
    stats = {}

    def record(name: str):
        def hook(module, args, z):
            z = z.double()
            stats[name] = (z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False))

        return hook

    hooks = [m.basis.register_forward_hook(record(n)) for n, m in convs.items()]
    try:
        model.eval()
        model(inputs)
    finally:
        for h in hooks:
            h.remove()
    for n, (mean, var) in stats.items():
        eps = convs[n].basis_norm.eps
        out[f'{n}.basis_norm.running_mean'], out[f'{n}.basis_norm.running_var'] = mean.float(), var.float()
        out[f'{n}.basis_norm.weight'], out[f'{n}.basis_norm.bias'] = (var + eps).sqrt().float(), mean.float()


@torch.no_grad()
def _stage_errors(plain: nn.Module, model: nn.Module, names: Sequence[str], inputs: Tensor) -> List[dict]:
    """Relative output error of every stage: cumulative (from the image) and of the stage alone."""

    def run(net: nn.Module) -> Dict[str, Tuple[Tensor, Tensor]]:
        io = {}
        hooks = [
            getattr(net, n).register_forward_hook(lambda mod, inp, y, n=n: io.__setitem__(n, (inp[0], y)))
            for n in names
        ]
        try:
            net.eval()  # mmdet's ResNet.train returns None
            net(inputs)
        finally:
            for h in hooks:
                h.remove()
        return io

    ref, got = run(plain), run(model)
    rows = []
    for n in names:
        x, y = ref[n]
        alone = getattr(model, n)(x)
        norm = float(y.double().norm()) or 1.0
        rows.append(
            dict(
                name=n,
                output_error=float((got[n][1].double() - y.double()).norm()) / norm,
                stage_alone_error=float((alone.double() - y.double()).norm()) / norm,
            )
        )
    return rows


def calibration_batch(
    images: Optional[str] = None, num_images: int = 8, img_size: int = 224, seed: int = 0, in_channels: int = 3
) -> Tuple[Tensor, dict]:
    """Inputs ``(N, C, img_size, img_size)`` for BN calibration and the output errors, and their description.

    ``images=None``: standard normal noise (the statistics of normalised images). Otherwise the first
    ``num_images`` images (sorted by name) of the folder ``images``, resized to ``img_size`` x ``img_size``, RGB,
    normalised with the ImageNet mean/std of mmdet and torchvision.

    Raises:
        ValueError: bad ``num_images``/``img_size``; FileNotFoundError: no such folder or no image in it.
    """
    check_int('num_images', num_images, low=1)
    check_int('img_size', img_size, low=16)
    if images is None:
        x = torch.randn(num_images, in_channels, img_size, img_size, generator=torch.Generator().manual_seed(seed))
        return x, dict(kind='random normal', num_images=num_images, img_size=img_size, seed=seed)
    if not osp.isdir(images):
        raise FileNotFoundError(f'image folder {images!r} does not exist')
    files = sorted(f for f in glob.glob(osp.join(images, '*')) if f.lower().endswith(_IMAGE_EXTS))[:num_images]
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(_IMAGE_EXTS)}) in {images!r}')
    if in_channels != 3:
        raise ValueError(f'images are RGB but the target has in_channels={in_channels}')
    import mmcv

    mean, std = torch.tensor(_IMAGENET_MEAN).view(3, 1, 1), torch.tensor(_IMAGENET_STD).view(3, 1, 1)
    batch = []
    for f in files:
        img = mmcv.imread(f, channel_order='rgb')
        if img is None:
            raise ValueError(f'cannot read the image {f!r}')
        img = mmcv.imresize(img, (img_size, img_size))
        batch.append((torch.from_numpy(img).permute(2, 0, 1).float() - mean) / std)
    return torch.stack(batch), dict(kind='images', folder=str(images), num_images=len(files), img_size=img_size)


def decompose_resnet(
    plain_state_dict: Mapping[str, Tensor], backbone_cfg: Mapping, inputs: Optional[Tensor] = None, als_iters: int = 25
) -> Tuple['OrderedDict[str, Tensor]', dict]:
    """Decompose a plain ResNet into the shared-basis backbone ``backbone_cfg``.

    Args:
        plain_state_dict: plain ResNet weights, keys relative to the backbone (see :func:`extract_plain_backbone`).
        backbone_cfg: a ``SharedBasisResNet`` config (see :func:`target_backbone_cfg`); its depth, widths and
            stem must be those of the plain network.
        inputs: ``(N, C, H, W)`` batch for the BN calibration and the output errors (default: 4 random 224 x
            224 images, see :func:`calibration_batch`).
        als_iters: alternating-refinement steps per basis (0: closed-form fits only).

    Returns:
        ``(state_dict, report)``: the backbone's state dict (loads with ``strict=True`` into
        ``MODELS.build(backbone_cfg)``) and a report of plain Python types (per-layer weight errors, per-group
        fitting candidates, per-stage output errors, overall numbers, the orthogonality loss at the start).

    Raises:
        ValueError: a bad target or ``als_iters``; CheckpointFormatError: weights that do not fit the target.
    """
    check_int('als_iters', als_iters, low=0)
    cfg = target_backbone_cfg(backbone_cfg=backbone_cfg)
    model = _build_target(cfg)
    plain = _build_plain(cfg)
    if inputs is None:
        inputs = calibration_batch(num_images=4, in_channels=cfg.get('in_channels', 3))[0]
    sd, dropped = _match_plain(plain_state_dict, plain)
    plain.load_state_dict(sd, strict=True)
    plain.eval()
    out = OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())
    copied = [k for k in out if k in sd and sd[k].shape == out[k].shape]
    for k in copied:
        out[k] = sd[k].detach().clone().to(out[k].dtype)
    basis_names = {id(p): n for n, p in model.shared_bases().items()}
    eps = {n: m.eps for n, m in model.named_modules() if isinstance(m, _BatchNorm)}
    layer_rows, group_rows, sums = [], [], []
    for name in model.res_layers:
        stage = getattr(model, name)
        if not stage.shared_basis_names():
            continue
        layers = _shared_layers(name, stage, plain, basis_names)
        if model.shared_rank is None:
            rows = _decompose_whole(layers, out, eps, als_iters, sums)
        else:
            groups = [[n for n, _ in g.shared] for g in stage.basis_groups(name)]
            rows = _decompose_factorised(layers, groups, out, als_iters, sums)
        layer_rows += rows[0]
        group_rows += rows[1]
    fitted = tuple(f'{la["name"]}.' for la in layer_rows) + tuple(basis_names.values())
    unset = [k for k in out if k not in copied and not k.startswith(fitted)]
    if unset:
        raise RuntimeError(f'internal error: tensors of the target neither copied nor fitted: {brief(unset)}')
    if model.shared_rank is not None:
        _calibrate_basis_norms(model, out, inputs)
    model.load_state_dict(out, strict=True)
    stages = _stage_errors(plain, model, model.res_layers, inputs)
    report = dict(
        layers=layer_rows,
        groups=group_rows,
        stages=stages,
        dropped_source_keys=dropped,
        overall=dict(
            weight_error=_rel(sum(e for e, _ in sums), sum(r for _, r in sums)),
            max_layer_weight_error=max((la['weight_error'] for la in layer_rows), default=0.0),
            output_error=stages[-1]['output_error'],
            decomposed_convs=len(layer_rows),
            copied_tensors=len(copied),
        ),
        orthogonality_loss=_orthogonality_loss(model),
    )
    return out, report


def _orthogonality_loss(model: SharedBasisResNet) -> Optional[float]:
    from ..models.losses import orthogonality_loss

    groups = model.basis_groups()
    with torch.no_grad():
        return float(orthogonality_loss(groups)[0]) if groups else None


def decompose_checkpoint(
    src: str,
    dst: str,
    arch: Optional[str] = None,
    backbone_cfg: Optional[Mapping] = None,
    images: Optional[str] = None,
    num_images: int = 8,
    img_size: int = 224,
    als_iters: int = 25,
    seed: int = 0,
) -> dict:
    """Read a plain ResNet checkpoint ``src``, decompose it, write ``dst`` atomically; return the written ``meta``.

    ``dst`` holds ``dict(state_dict=..., meta=...)`` with keys relative to the backbone (use it as the backbone's
    ``init_cfg=dict(type='Pretrained', checkpoint=dst)``) and ``meta`` of plain Python types: ``report`` (see
    :func:`decompose_resnet`), ``backbone_cfg``, ``arch``, ``source``, ``source_layout``, ``calibration``, ...
    Target: ``arch`` (a paper name) or ``backbone_cfg`` (see :func:`target_backbone_cfg`); calibration inputs:
    see :func:`calibration_batch`.

    Raises:
        FileNotFoundError: ``src`` or ``images`` missing. ValueError: ``dst`` is ``src`` or a directory, a bad
        target or option. CheckpointFormatError: ``src`` holds no plain ResNet fitting the target.
    """
    cfg = target_backbone_cfg(arch, backbone_cfg)
    if not osp.isfile(src):
        raise FileNotFoundError(f'source checkpoint {str(src)!r} does not exist or is not a file')
    if checkpoint_io.same_file(src, dst):
        raise ValueError(
            f'DST {str(dst)!r} is the source checkpoint: choose another output path (SRC is never overwritten)'
        )
    if osp.isdir(dst):
        raise ValueError(f'DST {str(dst)!r} is a directory: give a file name, e.g. {osp.join(dst, "shared.pth")!r}')
    inputs, calibration = calibration_batch(images, num_images, img_size, seed, cfg.get('in_channels', 3))
    plain_sd, layout = load_plain_checkpoint(src)
    state_dict, report = decompose_resnet(plain_sd, cfg, inputs, als_iters)
    from .. import __version__

    meta = dict(
        report=report,
        backbone_cfg=cfg,
        arch=arch,
        source=osp.basename(str(src)),
        source_layout=layout,
        calibration=calibration,
        als_iters=als_iters,
        keys='relative to the backbone: use init_cfg=dict(type="Pretrained", checkpoint=...) on the backbone',
        converter='mmbasis tools/model_converters/plain_to_shared.py',
        mmbasis_version=__version__,
    )
    save_atomic(dict(state_dict=state_dict, meta=meta), dst, protect=src)
    return meta


def _num(x: Optional[float]) -> str:
    return 'n/a' if x is None else f'{x:.4g}'


def format_report(report: Mapping) -> str:
    """A readable table of a :func:`decompose_resnet` report (relative errors ``||error|| / ||reference||``)."""
    lines = [f'{"layer":<18} {"kind":<11} {"T x S x k x k":<18} {"s+u":<9} weight error (BN-scaled)']
    for la in report['layers']:
        rank = 'whole' if la['rank'] is None else f'{la["rank"][0]}+{la["rank"][1]}'
        lines.append(
            f'{la["name"]:<18} {la["kind"]:<11} {"x".join(map(str, la["shape"])):<18} {rank:<9} '
            f'{_num(la["weight_error"])}'
        )
    lines += ['', f'{"basis (group)":<52} {"users":>5}  {"chosen":<28} candidates (weight error of the group)']
    for g in report['groups']:
        cands = ', '.join(f'{c} {_num(e)}' for c, e in g['candidates'].items())
        lines.append(f'{"+".join(g["bases"]):<52} {g["users"]:>5}  {g["method"]:<28} {cands}')
    lines += ['', f'{"stage":<8} {"output error (from the image)":<32} output error (stage alone, plain input)']
    for st in report['stages']:
        lines.append(f'{st["name"]:<8} {_num(st["output_error"]):<32} {_num(st["stage_alone_error"])}')
    o = report['overall']
    lines += [
        '',
        f'overall: weight error {_num(o["weight_error"])} over {o["decomposed_convs"]} decomposed '
        f'convolutions (worst layer {_num(o["max_layer_weight_error"])}), output error of the last stage '
        f'{_num(o["output_error"])}, orthogonality loss at the start {_num(report["orthogonality_loss"])}',
    ]
    if report.get('dropped_source_keys'):
        lines.append(f'dropped source keys (stages the target does not have): {brief(report["dropped_source_keys"])}')
    return '\n'.join(lines)
