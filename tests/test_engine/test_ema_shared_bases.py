"""The trees configs evaluate an EMA of the weights (mmdet's EMAHook with ExpMomentumEMA, update_buffers=True),
which averages every entry of the model's state_dict in place: a basis registered under several names would be
averaged several times per step. Each shared basis must move exactly like every other parameter."""

import glob

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.helpers.tiny_data import CONFIG_ROOT as ROOT

TREES = sorted(glob.glob(str(ROOT / 'deepforest' / '*.py')))


@pytest.mark.parametrize('path', TREES, ids=lambda p: p.rsplit('/', 1)[-1])
def test_every_trees_config_evaluates_the_same_ema(path):
    hooks = [h for h in Config.fromfile(path).custom_hooks if h['type'] == 'EMAHook']
    assert len(hooks) == 1, f'{path}: one EMAHook expected, got {len(hooks)}'
    assert hooks[0] == Config.fromfile(str(ROOT / '_base_' / 'datasets' / 'deepforest_trees.py')).trees_ema_hook


@pytest.mark.parametrize(
    'name', ['faster-rcnn_r18-s16u1_slim-fpn_scratch-16e_trees.py', 'ssd_r34-s48u1star_scratch-16e_trees.py']
)
def test_the_ema_moves_a_shared_basis_once_per_step(name):
    cfg = Config.fromfile(str(ROOT / 'deepforest' / name))
    hook = cfg.trees_ema_hook
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ema = MODELS.build(
        dict(type=hook['ema_type'], model=model, momentum=hook['momentum'], gamma=hook['gamma'], update_buffers=True)
    )
    ema.update_parameters(model)  # the first update copies the model
    before = {n: p.detach().clone() for n, p in ema.module.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update_parameters(model)
    moved = {n: (p.detach() - before[n]).mean().item() for n, p in ema.module.named_parameters()}
    step = moved['backbone.conv1.weight']
    assert 0 < step < 1
    basis_names = [n for n in moved if 'basis' in n.lower()]
    assert len(basis_names) >= 4  # the model has shared bases to check
    for n, delta in moved.items():
        assert delta == pytest.approx(step, rel=1e-4), f'{n} moved by {delta}, a plain parameter by {step}'
