import csv
import math
import os.path as osp

import pytest

from tests.test_tools.tiny import DEMO_CONFIG, run, tiny_options


@pytest.mark.slow
def test_gradient_flow_tool_writes_both_conditions(tmp_path):
    out_dir = str(tmp_path / 'gf')
    proc = run(['tools/analysis_tools/gradient_flow.py', DEMO_CONFIG, '--iters', '2', '--out-dir', out_dir,
                '--cfg-options', *tiny_options(str(tmp_path / 'data'), 1)])
    with open(osp.join(out_dir, 'gradient_flow.csv')) as f:
        rows = list(csv.DictReader(f))
    assert {r['condition'] for r in rows} == {'with', 'without'}
    assert len(rows) == 2 * 2 * 4  # conditions x iterations x 4 stage bases
    for r in rows:
        for key in ('grad_mean', 'grad_max', 'sigma_min', 'sigma_max', 'loss'):
            assert math.isfinite(float(r[key]))
        assert float(r['grad_max']) >= float(r['grad_mean']) >= 0
        if r['iter'] != '0':
            # at iteration 0 mmdet's zero_init_residual (last BN of each block at 0) cuts the task gradient
            # of the bases; from the first step on every basis receives one
            assert float(r['grad_mean']) > 0
    assert all(float(r['loss_orth']) > 0 for r in rows if r['condition'] == 'with')
    assert all(float(r['loss_orth']) == 0 for r in rows if r['condition'] == 'without')
    assert osp.getsize(osp.join(out_dir, 'gradient_flow.png')) > 1000
    assert 'wrote' in proc.stdout
