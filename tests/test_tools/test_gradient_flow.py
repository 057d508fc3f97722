import csv
import math
import os.path as osp

import pytest

from tests.helpers.tiny import DEMO_CONFIG, run, tiny_options


@pytest.mark.slow
def test_gradient_flow_tool_writes_both_conditions(tmp_path):
    out_dir = str(tmp_path / 'gf')
    proc = run(
        [
            'tools/analysis_tools/gradient_flow.py',
            DEMO_CONFIG,
            '--iters',
            '2',
            '--seeds',
            '0',
            '1',
            '--out-dir',
            out_dir,
            '--cfg-options',
            *tiny_options(str(tmp_path / 'data'), 1),
        ]
    )
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
    assert osp.getsize(osp.join(out_dir, 'gradient_flow.png')) > 1000
    assert 'wrote' in proc.stdout
