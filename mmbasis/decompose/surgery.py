"""Module surgery of a decomposition: the fitted bases, coefficients and rewritten BatchNorms written into the
target's state dict, layer by layer (:func:`decompose_resnet`).

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

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.backbones import SharedBasisResNet
from ..models.layers import BasisConv2d, FactorizedConv2d
from ..utils.misc import brief, check_int
from .calibration import calibrate_basis_norms, calibration_batch, stage_errors
from .fits import TINY, fit_group, fit_whole
from .report import relative, summary
from .targets import build_plain, build_target, match_plain, target_backbone_cfg


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
            fit = fit_group(xs, owner, ranks, u, init, als_iters)
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
                    weight_error=relative(err, ms[j].pow(2).sum()),
                )
            )
        group_rows.append(
            dict(
                bases=list(names),
                users=len(users),
                method=method,
                candidates={c: relative(e, total) for c, (e, _) in candidates.items()},
                iterations=len(fit.history) - 1 if method.endswith('als') else 0,
                weight_error=relative(candidates[method][0], total),
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
    ok = (scale.abs() > TINY) & (alpha.abs() > TINY)
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
            candidates[init] = fit_whole(ms, absorbable, v0, 0)
            if als_iters:
                candidates[f'{init}+als'] = fit_whole(ms, absorbable, v0, als_iters)
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
                    weight_error=relative(err, m.pow(2).sum()),
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
                candidates={c: relative(candidates[c].history[-1], total) for c in shown},
                iterations=len(fit.history) - 1,
                weight_error=relative(fit.history[-1], total),
            )
        )
    for bn, beta in input_scales:  # after every output rewrite: the input scales multiply the whole BN output
        out[f'{bn}.weight'] = (out[f'{bn}.weight'].double() * beta).float()
        out[f'{bn}.bias'] = (out[f'{bn}.bias'].double() * beta).float()
    return layer_rows, group_rows


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
    model = build_target(cfg)
    plain = build_plain(cfg)
    if inputs is None:
        inputs = calibration_batch(num_images=4, in_channels=cfg.get('in_channels', 3))[0]
    sd, dropped = match_plain(plain_state_dict, plain)
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
        calibrate_basis_norms(model, out, inputs)
    model.load_state_dict(out, strict=True)
    stages = stage_errors(plain, model, model.res_layers, inputs)
    return out, summary(layer_rows, group_rows, stages, dropped, sums, len(copied), _orthogonality_loss(model))


def _orthogonality_loss(model: SharedBasisResNet) -> Optional[float]:
    from ..models.losses import orthogonality_loss

    groups = model.basis_groups()
    with torch.no_grad():
        return float(orthogonality_loss(groups)[0]) if groups else None
