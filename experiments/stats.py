"""Comparisons between cells of a study, over their seeds: what the studies' tables may claim.

For every comparison of a table (cell A against reference cell B, one value per seed):

* the mean difference ``Δ = mean(A) - mean(B)`` with its 95 % Welch confidence interval (unequal variances,
  Welch–Satterthwaite degrees of freedom): the effect in the metric's own unit, and the family-wise 95 % interval
  (Bonferroni: each at level ``1 - 0.05/N`` for the N comparisons of the table, so that all hold at once): what
  the table as a whole rules out, e.g. "sharing costs more than x";
* Hedges' g (the difference in units of the pooled seed standard deviation, small-sample corrected) with the
  approximate 95 % interval of Hedges and Olkin (normal approximation, ``SE² = (na+nb)/(na nb) + g²/(2(na+nb))``;
  rough at 3 seeds per cell, where it is mainly a scale: "how many seed spreads apart");
* Welch's t, its degrees of freedom and the two-sided p-value, raw and Holm-adjusted over the **family** = the
  comparisons of the same table that could be tested (two or more seeds on each side, not all identical);
* a reading driven by the adjusted p only: below ``ALPHA`` "larger than seed noise after correcting for N
  comparisons", otherwise "not separable from seed noise" (noting an uncorrected p below ``ALPHA``).

Holm's step-down procedure controls the family-wise error rate at ``ALPHA`` under any dependence between the
comparisons (several comparisons of a table share a reference cell). A per-comparison 95 % interval that excludes
0 while the adjusted p exceeds ``ALPHA`` is exactly the case the correction is for; the family-wise interval then
includes 0 (Bonferroni is never less conservative than Holm). Pure functions over lists of floats (scipy for the
t distribution), so they can be tested on hand-made numbers.
"""

import math
import statistics
from dataclasses import dataclass
from typing import List, Optional, Sequence

ALPHA = 0.05
LEVEL = 0.95


@dataclass(frozen=True)
class Welch:
    """Welch comparison of two samples ``a`` (the cell) and ``b`` (the reference)."""

    n_a: int
    n_b: int
    diff: float  # mean(a) - mean(b)
    ci_lo: float  # LEVEL Welch interval of diff
    ci_hi: float
    t: float
    df: float
    p: float  # two-sided; NaN when both samples have no spread
    g: float  # Hedges' g (NaN without spread)
    g_lo: float
    g_hi: float


def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Welch:
    """Welch's t-test of ``mean(a) - mean(b)`` with its interval and Hedges' g. Needs two values per side."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f'a Welch comparison needs at least 2 values per side, got {len(a)} and {len(b)}')
    na, nb = len(a), len(b)
    va, vb = statistics.variance(a), statistics.variance(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    se2 = va / na + vb / nb
    nan = float('nan')
    if se2 == 0:  # identical values on each side: no seed noise to compare with
        return Welch(na, nb, diff, nan, nan, nan, nan, nan, nan, nan, nan)
    se = math.sqrt(se2)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    pooled = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    g = diff / pooled * (1 - 3 / (4 * (na + nb) - 9))
    se_g = math.sqrt((na + nb) / (na * nb) + g * g / (2 * (na + nb)))
    z = float(stats.norm.ppf(0.5 + level / 2))
    return Welch(na, nb, diff, diff - half, diff + half, t, df, p, g, g - z * se_g, g + z * se_g)


def holm(pvalues: Sequence[float]) -> List[float]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1), in the input order; NaN stays NaN and does not
    count towards the family size."""
    idx = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    m = len(idx)
    out = [float('nan')] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def reading(w: Welch, p_adj: float, family: int, better: str, worse: str, alpha: float = ALPHA) -> str:
    """What the comparison allows one to say, from its adjusted p-value (``better``/``worse``: the sentence for a
    positive or negative difference)."""
    if math.isnan(w.p):
        return 'no seed noise to compare with (identical results)'
    if p_adj < alpha:
        return f'larger than seed noise after correcting for {family} comparisons: {better if w.diff > 0 else worse}'
    nominal = f' (uncorrected p < {alpha:g} only)' if w.p < alpha else ''
    return f'not separable from seed noise{nominal}'


def comparison_table(comparisons: Sequence[tuple], metric: str = 'bbox mAP') -> List[str]:
    """Markdown lines for ``comparisons`` = ``(label, a values, b values, better sentence, worse sentence)``; pairs
    with fewer than 2 values on a side are left out (and out of the family). Empty list when none remains."""
    tested = [(c, welch(c[1], c[2])) for c in comparisons if len(c[1]) >= 2 and len(c[2]) >= 2]
    if not tested:
        return []
    adjusted = holm([w.p for _, w in tested])
    family = sum(not math.isnan(p) for p in adjusted)
    lines = [
        f"| comparison | seeds | Δ {metric} (mean) [95 % CI] | [family-wise 95 % CI] | Hedges' g [approx. 95 % CI] | "
        f'Welch t (df) | p | p Holm (of {family}) | reading |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for ((label, a, b, better, worse), w), p_adj in zip(tested, adjusted):
        if math.isnan(w.p):
            cols = f'{w.diff:+.3f} | - | - | - | - | -'
        else:
            fw = welch(a, b, level=1 - (1 - LEVEL) / family)  # Bonferroni: all intervals of the table hold at once
            cols = (
                f'{w.diff:+.3f} [{w.ci_lo:+.3f}, {w.ci_hi:+.3f}] | [{fw.ci_lo:+.3f}, {fw.ci_hi:+.3f}] | '
                f'{w.g:+.2f} [{w.g_lo:+.2f}, {w.g_hi:+.2f}] | {w.t:+.2f} ({w.df:.1f}) | {w.p:.3f} | {p_adj:.3f}'
            )
        lines.append(f'| {label} | {w.n_a} vs {w.n_b} | {cols} | {reading(w, p_adj, family, better, worse)} |')
    return lines


def seeds_for_power(
    diff: float, sd_a: float, sd_b: float, family: int = 1, alpha: float = ALPHA, power: float = 0.8, max_n: int = 200
) -> Optional[int]:
    """Seeds per cell for which Welch's test at level ``alpha / family`` (Holm's first step, i.e. Bonferroni: the
    conservative case) detects a true difference ``diff`` with probability ``power``, if the seed standard
    deviations are ``sd_a`` and ``sd_b`` (noncentral t with Welch's degrees of freedom); None beyond ``max_n``."""
    from scipy import stats

    level = alpha / family
    for n in range(2, max_n + 1):
        se2 = (sd_a**2 + sd_b**2) / n
        df = se2**2 / ((sd_a**2 / n) ** 2 / (n - 1) + (sd_b**2 / n) ** 2 / (n - 1))
        crit = float(stats.t.ppf(1 - level / 2, df))
        ncp = abs(diff) / math.sqrt(se2)
        achieved = float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
        if achieved >= power:
            return n
    return None
