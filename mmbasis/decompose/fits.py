"""The pure tensor fits of the decomposition (no modules, no checkpoints): orthonormal bases and whole convolutions.

Factorised convolutions: :func:`fit_group` fits orthonormal shared bases ``B_b`` (jointly orthogonal) and unique
bases ``U_j`` to BN-scaled filters ``M_j`` ``(T_j, r)``, from a closed-form start (``'svd'`` or ``'subspace'``)
refined by alternating orthogonal-iteration steps that never increase the error. Whole shared convolutions:
:func:`fit_whole` fits ``M_j ~ diag(alpha_j) V diag(beta_j)`` by alternating least squares. Everything is in the
precision of the inputs (the decomposition passes float64).
"""

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor

TINY = 1e-12


def _complement(rows: Optional[Tensor], dim: int, like: Tensor) -> Tensor:
    """Orthonormal rows ``(dim - e, dim)`` orthogonal to the orthonormal ``rows`` ``(e, dim)``."""
    if rows is None or rows.shape[0] == 0:
        return torch.eye(dim, dtype=like.dtype)
    q, _ = torch.linalg.qr(rows.T, mode='complete')
    return q[:, rows.shape[0] :].T


def top_rows(x: Tensor, k: int, exclude: Optional[Tensor] = None) -> Tensor:
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
    ok = evals.flip(0)[:m] > max(1e-12 * float(evals[-1]), TINY)
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
    :func:`top_rows` when the warm start has lost rank.
    """
    k = rows.shape[0]
    if k == 0:
        return rows
    y = _project_out(rows, exclude)
    y = _project_out((x @ y.T).T @ x, exclude)
    q, r = torch.linalg.qr(y.T)
    diag = r.diagonal().abs()
    if diag.max() <= TINY or diag.min() <= 1e-9 * diag.max():
        return top_rows(x, k, exclude)
    return q.T


@dataclass
class GroupFit:
    bases: List[Tensor]  # B_b (s_b, r) per basis of the group
    uniques: List[Tensor]  # U_j (u, r) per layer
    history: List[float]  # squared error (sum over the layers) after the initialisation and each refinement step


def fit_group(
    xs: List[Tensor], owner: List[int], ranks: List[int], u: int, init: str, iters: int, tol: float = 1e-3
) -> GroupFit:
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
        stack = [xs[j] if init == 'svd' else top_rows(xs[j], s + u) for j in members[b]]
        bases.append(top_rows(torch.cat(stack), s, torch.cat(bases) if bases else None))
    uniques = [top_rows(x, u, bases[owner[j]]) for j, x in enumerate(xs)]

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
    return GroupFit(bases, uniques, history)


@dataclass
class WholeFit:
    v: Tensor  # V (T, S, K), unit-norm rows
    alphas: List[Tensor]  # alpha_j (T,)
    betas: List[Tensor]  # beta_j (S,), ones where not absorbable
    history: List[float]


def fit_whole(ms: List[Tensor], absorbable: List[bool], v: Tensor, iters: int, tol: float = 1e-6) -> WholeFit:
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
            out.append(torch.where(den > TINY, (m * p).sum((1, 2)) / den.clamp_min(TINY), torch.zeros_like(den)))
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
        v = torch.where(den > TINY, num / den.clamp_min(TINY), v)
        for j, m in enumerate(ms):
            if absorbable[j]:
                q = alphas[j].view(-1, 1, 1) * v
                den_b = q.pow(2).sum((0, 2))
                new = torch.where(den_b > TINY, (m * q).sum((0, 2)) / den_b.clamp_min(TINY), betas[j])
                betas[j] = new.clamp_min(1e-3)
        if all(absorbable):  # gauge: geometric mean 1 of every input channel's scales
            gm = torch.stack(betas).log().mean(0).exp()
            betas = [bt / gm for bt in betas]
            v = v * gm.view(1, -1, 1)
        alphas = fit_alphas()
        history.append(error())
        if history[-2] - history[-1] <= tol * max(history[-2], TINY):
            break
    norms = v.flatten(1).norm(dim=1).clamp_min(TINY)  # gauge: unit-norm rows of V
    return WholeFit(v / norms.view(-1, 1, 1), [a * norms for a in alphas], betas, history)
