"""The orthogonality regulariser on shared filter bases (paper Sec. 3.3; digest Sec. 2).

For a group ``g`` with basis matrix ``B_g`` (``n_g`` rows = basis elements, ``S k^2`` columns)::

    L_family = sum_g ||B_g B_g^T - I||_F^2 / sum_g n_g^2          (pooled over the stages)
    L_orth   = sum over families of L_family

i.e. the mean of the squared entries of ``B B^T - I`` pooled over all groups of a family (official
``train_ilsvrc.py``); separate families (3x3 and 1x1 bases of ResNet50-Shared++, expansion and projection
of MobileNetV2-Shared++) are separate terms. The diagonal is kept, so the target is orthonormality.
For "tall" bases (more rows than columns, e.g. a 4p x p expansion) ``B B^T = I`` is unattainable and the
term has a positive floor ``(n - m) / n^2`` per basis.

Everything is computed in float32 with autocast disabled, whatever the surrounding precision.

Cost. The values and gradients are those of the formula above (float32 round-off apart), computed with the
fewest matrix products: per group one Gram matrix in the forward (symmetric: only the blocks on and above the
diagonal are multiplied) and one product in the backward, from the closed form
``d ||B B^T - I||^2 / dB = 4 (B B^T - I) B`` (autograd through ``B @ B.T`` would take two products in the
backward), and for tall bases the smaller Gram ``C = B^T B`` (``m x m``), since
``||B B^T - I_n||^2 = ||C - I_m||^2 + n - m`` and ``4 (B B^T - I) B = 4 B (C - I_m)``. The max-abs diagnostic
of a wide basis is read off its Gram matrix; a tall basis needs ``B B^T`` for it, an extra product done only
when the diagnostic is asked for (``max_error=True``).
"""

import math
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..layers import BasisGroup

POOLINGS = ('paper', 'basis')


def _gram(rows: Tensor, chunk: int = 128) -> Tensor:
    """``rows @ rows.T`` computed from the blocks on and above the diagonal (up to 4 row blocks of at least ``chunk``
    rows each; the blocks below are their transposes): about 5/8 of the multiply-adds of one product."""
    k = min(4, max(1, rows.shape[0] // chunk))
    if k == 1:
        return rows @ rows.t()
    parts = rows.tensor_split(k)
    bounds = [0]
    for part in parts:
        bounds.append(bounds[-1] + part.shape[0])
    out = rows.new_empty(rows.shape[0], rows.shape[0])
    for i in range(k):
        for j in range(i, k):
            block = parts[i] @ parts[j].t()
            out[bounds[i] : bounds[i + 1], bounds[j] : bounds[j + 1]] = block
            if i != j:
                out[bounds[j] : bounds[j + 1], bounds[i] : bounds[i + 1]] = block.t()
    return out


def _max_abs(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(t, ord=math.inf)


class _GramError(torch.autograd.Function):
    """``(sum((B B^T - I)^2), max |B B^T - I|)`` of ``B`` = the given 2-D float32 row blocks stacked, with the
    closed-form gradient ``4 (B B^T - I) B`` to the blocks (the max is not differentiable: no gradient)."""

    @staticmethod
    def forward(ctx, want_max: bool, *blocks: Tensor) -> Tuple[Tensor, Tensor]:
        mat = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
        n, m = mat.shape
        tall = n > m
        err = _gram(mat.t() if tall else mat)  # tall: the m x m Gram, ||B B^T - I_n||^2 = ||B^T B - I_m||^2 + n - m
        err.diagonal().sub_(1.0)
        flat = err.view(-1)
        sq = torch.dot(flat, flat) + (n - m if tall else 0)
        if not want_max:
            mx = err.new_full((), math.nan)
        elif tall:
            full = _gram(mat)
            full.diagonal().sub_(1.0)
            mx = _max_abs(full)
        else:
            mx = _max_abs(err)
        ctx.tall = tall
        ctx.rows = [b.shape[0] for b in blocks]
        ctx.save_for_backward(mat, err)
        ctx.mark_non_differentiable(mx)
        return sq, mx

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sq: Tensor, grad_mx: Optional[Tensor]):
        mat, err = ctx.saved_tensors
        grad = (mat @ err if ctx.tall else err @ mat).mul_(4.0 * grad_sq)
        return (None, *grad.split(ctx.rows))


def _rows(params) -> List[Tensor]:
    return [p.flatten(1).float() for p in params]


def _squared_error(group: BasisGroup, include_unique: bool, want_max: bool) -> Tuple[Tensor, int, Tensor]:
    """(sum of penalised squared entries of B B^T - I, number of penalised entries, max |entry| or NaN)."""
    shared = _rows(p for _, p in group.shared)
    sq, mx = _GramError.apply(want_max, *shared)
    n_s = sum(s.shape[0] for s in shared)
    if not (include_unique and group.unique):
        return sq, n_s**2, mx
    # Unique-basis variant, exactly the official CIFAR-10 script (``train_cifar10.py``, include_unique_basis):
    # rows = [shared; unique of every using layer]; penalised: the shared rows against every row (the block
    # D[:n_s, :], so a shared-unique pair counts once, from its shared row) and, within each layer, its
    # unique rows against each other. Count = n_s * n + sum_j u_j^2. The shared-shared block is ``sq`` above;
    # the shared-unique block and each layer's unique block are small and go through autograd.
    uniques = _rows(p for _, p in group.unique)
    cross = torch.cat(shared) @ torch.cat(uniques).t() if len(shared) > 1 else shared[0] @ torch.cat(uniques).t()
    sq = sq + cross.pow(2).sum()
    maxes = [mx, _max_abs(cross.detach())]
    count = n_s * (n_s + cross.shape[1])
    for u in uniques:
        err = u @ u.t() - torch.eye(u.shape[0], device=u.device)
        sq = sq + err.pow(2).sum()
        maxes.append(_max_abs(err.detach()))
        count += u.shape[0] ** 2
    return sq, count, torch.stack(maxes).max() if want_max else mx


def orthogonality_loss(
    groups: Iterable[BasisGroup], pooling: str = 'paper', include_unique: bool = False, max_error: bool = True
) -> Tuple[Tensor, Tensor]:
    """Unweighted ``L_orth`` of ``groups`` and the largest ``|B B^T - I|`` entry (a detached diagnostic).

    Args:
        groups: :class:`BasisGroup` objects, e.g. ``backbone.basis_groups()``.
        pooling: ``'paper'`` pools the squared errors of all groups of a family and divides by their total
            number of entries, summing the families; ``'basis'`` takes each group's mean squared error and
            averages over the groups (every basis weighs the same whatever its size).
        include_unique: also penalise the unique bases of the layers that use each shared basis, exactly as the
            official CIFAR-10 script does (shared rows against all rows, unique rows against the other
            unique rows of their own layer); the ImageNet and CIFAR-100 scripts regularise shared bases only.
        max_error: compute the diagnostic; False returns NaN for it and spares tall bases (more rows than
            columns) a product (for wide bases the diagnostic is free).

    Returns:
        ``(loss, max_abs_error)``: float32 scalars; ``loss`` carries gradients to the bases.
    """
    if pooling not in POOLINGS:
        raise ValueError(f'pooling={pooling!r} is not allowed: choose one of {POOLINGS}')
    groups = list(groups)
    if not groups:
        raise ValueError('no shared bases to regularise (empty list of basis groups)')
    device = groups[0].shared[0][1].device
    with torch.autocast(device_type=device.type, enabled=False):
        families: Dict[str, List] = {}
        means, max_err = [], []
        for g in groups:
            sq, count, mx = _squared_error(g, include_unique, max_error)
            acc = families.setdefault(g.family, [0.0, 0])
            acc[0] = acc[0] + sq
            acc[1] += count
            means.append(sq / count)
            max_err.append(mx)
        if pooling == 'paper':
            loss = sum(sq / count for sq, count in families.values())
        else:
            loss = torch.stack(means).mean()
    return loss, torch.stack(max_err).max()


@torch.no_grad()
def singular_value_spread(group: BasisGroup) -> Tuple[float, float]:
    """``(sigma_min, sigma_max)`` of ``B_g`` (1, 1 for orthonormal rows); used by the analysis tools."""
    s = torch.linalg.svdvals(group.matrix().detach().float())
    return float(s.min()), float(s.max())
