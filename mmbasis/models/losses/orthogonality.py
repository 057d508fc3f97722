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
"""

from typing import Dict, Iterable, List, Tuple

import torch
from torch import Tensor

from ..layers import BasisGroup

POOLINGS = ('paper', 'basis')


def _squared_error(group: BasisGroup, include_unique: bool) -> Tuple[Tensor, int, Tensor]:
    """(sum of penalised squared entries of B B^T - I, number of penalised entries, max |entry|)."""
    shared = group.matrix().float()
    if not (include_unique and group.unique):
        err = shared @ shared.t() - torch.eye(shared.shape[0], device=shared.device)
        return err.pow(2).sum(), shared.shape[0] ** 2, err.detach().abs().max()
    # Unique-basis variant, exactly the official CIFAR-10 script (``train_cifar10.py``, include_unique_basis):
    # rows = [shared; unique of every using layer]; penalised: the shared rows against every row (the block
    # D[:n_s, :], so a shared-unique pair counts once, from its shared row) and, within each layer, its
    # unique rows against each other. Count = n_s * n + sum_j u_j^2.
    uniques = [p.flatten(1).float() for _, p in group.unique]
    rows = torch.cat([shared] + uniques, dim=0)
    n_s, n = shared.shape[0], rows.shape[0]
    err = rows @ rows.t() - torch.eye(n, device=rows.device)
    mask = torch.zeros(n, n, dtype=torch.bool, device=rows.device)
    mask[:n_s, :] = True
    start = n_s
    for u in uniques:
        mask[start : start + u.shape[0], start : start + u.shape[0]] = True
        start += u.shape[0]
    masked = err[mask]
    return masked.pow(2).sum(), int(mask.sum()), masked.detach().abs().max()


def orthogonality_loss(
    groups: Iterable[BasisGroup], pooling: str = 'paper', include_unique: bool = False
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
            sq, count, mx = _squared_error(g, include_unique)
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
