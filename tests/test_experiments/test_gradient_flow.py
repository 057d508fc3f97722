"""experiments/gradient_flow.py: two ordinary config runs per seed (with and without the regulariser) recorded by
BasisStatsHook at every iteration."""

import csv
import math
import os.path as osp

import pytest

from experiments import gradient_flow as gf
from tests.helpers.tiny import DEMO_CONFIG, tiny_options


@pytest.mark.slow
def test_gradient_flow_writes_both_conditions(tmp_path, capsys):
    out_dir = str(tmp_path / 'gf')
    argv = [DEMO_CONFIG, '--iters', '2', '--seeds', '0', '1', '--threads', '1', '--out-dir', out_dir]
    assert gf.main([*argv, '--cfg-options', *tiny_options(str(tmp_path / 'data'), 1)]) == 0
    with open(osp.join(out_dir, 'gradient_flow.csv')) as f:
        rows = list(csv.DictReader(f))
    assert {r['condition'] for r in rows} == {'with', 'without'} and {r['seed'] for r in rows} == {'0', '1'}
    assert len(rows) == 2 * 2 * 2 * 4  # seeds x conditions x iterations x 4 stage bases
    assert {r['uses'] for r in rows} == {'2'}  # S16U1 on ResNet-18: both convs of one shared block per stage
    for r in rows:
        for key in ('grad_norm', 'grad_mean', 'grad_max', 'sigma_min', 'sigma_max', 'loss'):
            assert math.isfinite(float(r[key]))
        assert float(r['grad_max']) >= float(r['grad_mean']) >= 0
        assert float(r['grad_mean']) > 0  # zero_init_residual=False (the official init): every basis gets one
    assert all(float(r['loss_orth']) > 0 for r in rows if r['condition'] == 'with')
    assert all(float(r['loss_orth']) == 0 for r in rows if r['condition'] == 'without')
    # the same start: iteration 0 of both conditions sees the same weights (the regulariser draws nothing)
    first = {(r['seed'], r['basis'], r['condition']): r for r in rows if r['iter'] == '0'}
    for seed, basis, _ in first:
        assert first[(seed, basis, 'with')]['sigma_max'] == first[(seed, basis, 'without')]['sigma_max']
    assert osp.getsize(osp.join(out_dir, 'gradient_flow.png')) > 1000
    summary = open(osp.join(out_dir, 'summary.md')).read()
    assert summary.startswith('Command: python -m experiments.gradient_flow') and 'layer3.shared_basis' in summary
    assert 'wrote' in capsys.readouterr().out


def test_a_missing_config_is_one_error_line(tmp_path):
    with pytest.raises(SystemExit, match="config file 'none.py' does not exist"):
        gf.main(['none.py', '--out-dir', str(tmp_path)])
