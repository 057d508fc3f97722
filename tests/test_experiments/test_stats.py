"""experiments/stats.py: the comparisons behind the studies' readings, on hand-made numbers and on
the committed runs of the sharing study."""

import math
import os.path as osp

import pytest
from scipy import stats as scipy_stats

from experiments import common, grids
from experiments import sharing_study as study
from experiments import stats as st

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_welch_is_scipys_test_and_its_interval_is_the_test_inverted():
    a, b = [0.854, 0.845, 0.842], [0.827, 0.836, 0.827, 0.829]
    w = st.welch(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert w.t == pytest.approx(ref.statistic) and w.p == pytest.approx(ref.pvalue)
    assert w.diff == pytest.approx(sum(a) / 3 - sum(b) / 4) and w.ci_lo < w.diff < w.ci_hi
    # at either end of the 95 % interval the difference is exactly significant at 0.05
    for end in (w.ci_lo, w.ci_hi):
        assert st.welch(a, [x + end for x in b]).p == pytest.approx(0.05, rel=1e-6)


def test_hedges_g_by_hand():
    w = st.welch([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    g = 1.0 * (1 - 3 / (4 * 6 - 9))  # difference 1, pooled sd 1, small-sample factor 0.8
    se = math.sqrt(6 / 9 + g * g / 12)
    assert w.g == pytest.approx(g) and (w.g_lo, w.g_hi) == pytest.approx((g - 1.959964 * se, g + 1.959964 * se))


def test_identical_runs_have_no_noise_to_compare_with():
    w = st.welch([0.5, 0.5], [0.4, 0.4])
    assert w.diff == pytest.approx(0.1) and math.isnan(w.p) and math.isnan(w.ci_lo)
    with pytest.raises(ValueError, match='at least 2 values per side, got 1 and 2'):
        st.welch([0.5], [0.4, 0.4])


def test_holm_step_down_is_monotone_and_skips_nan():
    assert st.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = st.holm([0.01, float('nan'), 0.04])  # a NaN is not a test: the family has 2 members
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert st.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_readings_follow_the_adjusted_p():
    clear = ([0.90, 0.91, 0.92], [0.50, 0.51, 0.52], 'A is better', 'A is worse')
    nominal = ([0.854, 0.845, 0.842], [0.827, 0.836, 0.827], 'B is better', 'B is worse')
    noise = ([0.80, 0.82, 0.81], [0.81, 0.80, 0.82], 'C is better', 'C is worse')
    table = [('clear', *clear), ('nominal', *nominal), ('noise', *noise), ('noise 2', *noise), ('one seed', [1], [2])]
    lines = st.comparison_table(table)
    assert len(lines) == 6  # header, rule, four rows: one seed cannot be tested and is not in the family
    assert 'p Holm (of 4)' in lines[0]
    assert lines[2].endswith('| larger than seed noise after correcting for 4 comparisons: A is better |')
    assert ' | 0.024 | 0.071 | ' in lines[3]  # p 0.024 is the second smallest of 4: times 3
    assert lines[3].endswith('| not separable from seed noise (uncorrected p < 0.05 only) |')
    assert lines[4].endswith('| not separable from seed noise |')


def test_the_48_epoch_sharing_comparisons_do_not_survive_the_correction():
    """The committed 48-epoch grid: both shared ResNet-34s are above the plain one at p < 0.05 uncorrected, but not
    after Holm's correction over the table's five comparisons; the family-wise intervals then include 0."""
    rows = [
        r
        for r in common.read_rows(osp.join(REPO, 'docs', 'results', 'sharing_study', 'runs.csv'))
        if r['epochs'] == '48' and r['options'] == '[]'
    ]
    lines = {ln.split(' | ')[0].lstrip('| '): ln.split(' | ') for ln in study.compare(grids.SHAPES, rows)[2:]}
    assert len(lines) == 5
    for key in (
        'sharing, ResNet-34 (S48U1*): r34-s48u1star vs r34',
        'sharing, ResNet-34 (S16U1*): r34-s16u1star vs r34',
    ):
        cols = lines[key]
        p, p_holm = float(cols[6]), float(cols[7])
        assert p < 0.05 < p_holm and cols[8].startswith('not separable from seed noise (uncorrected p < 0.05 only)')
        lo, hi = (float(v) for v in cols[3].strip('[]').split(', '))
        assert lo < 0 < hi
    assert not any('larger than seed noise' in ln[-1] for ln in lines.values())


def test_seeds_for_power_grows_as_the_effect_shrinks():
    big = st.seeds_for_power(0.02, 0.005, 0.005)
    small = st.seeds_for_power(0.01, 0.005, 0.005)
    corrected = st.seeds_for_power(0.01, 0.005, 0.005, family=5)
    assert 2 <= big < small < corrected
    assert st.seeds_for_power(0.0, 0.005, 0.005, max_n=50) is None
