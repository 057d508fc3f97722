"""Deploy forms chosen by measurement: every factorised conv gets the form that was faster, outputs stay exact."""

from types import SimpleNamespace

import pytest
import torch
from mmdet.registry import HOOKS, MODELS
from mmdet.utils import register_all_modules
from torch import nn

import mmbasis  # noqa: F401
from mmbasis.deploy import DEPLOY_FORMS, calibrate_deploy_forms, format_choices
from mmbasis.models.archs import paper_backbone_cfg
from mmbasis.models.layers import FactorizedConv2d
from tests.helpers import randomize_bn


def _assert_same(after, before):
    for a, b in zip(after, before):  # float32, norms folded: relative to the output's scale
        assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max())


def _backbone(name='ResNet34-S48U1*'):
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    model = MODELS.build(paper_backbone_cfg(name))
    randomize_bn(model)
    model.eval()
    return model


def test_choices_cover_every_factorised_conv_and_the_deploy_structure_follows_them():
    model = _backbone()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    names = [n for n, m in model.named_modules() if isinstance(m, FactorizedConv2d)]
    choices = calibrate_deploy_forms(model, x, reps=2, warmup=0)
    assert list(choices) == names and len(names) == 2 * (2 + 3 + 5 + 2)  # two convs in each repeated block
    for c in choices.values():
        assert c['form'] in DEPLOY_FORMS and c['by_macs'] in DEPLOY_FORMS
        assert c['merged_ms'] > 0 and c['factorized_ms'] > 0
        assert c['form'] == min(('merged', 'factorized'), key=lambda f: c[f'{f}_ms'])
    assert len(format_choices(choices).splitlines()) == len(names)
    modules = dict(model.named_modules())
    model.switch_to_deploy()
    for name, c in choices.items():
        block, conv = name.rsplit('.', 1)
        fused = getattr(modules[block], conv)
        assert isinstance(fused, nn.Conv2d if c['form'] == 'merged' else nn.Sequential), name
    with torch.no_grad():
        after = model(x)
    _assert_same(after, before)


@pytest.mark.parametrize('form', DEPLOY_FORMS)
def test_both_forced_forms_are_exact(form):
    model = _backbone('ResNet34-S16U1*')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    for m in model.modules():
        if isinstance(m, FactorizedConv2d):
            m.forced_deploy_form = form
    model.switch_to_deploy()
    with torch.no_grad():
        after = model(x)
    _assert_same(after, before)


def test_bad_uses_are_refused():
    model = _backbone()
    with pytest.raises(ValueError, match='reps=0, warmup=0 are not allowed'):
        calibrate_deploy_forms(model, torch.randn(1, 3, 64, 64), reps=0, warmup=0)
    conv = next(m for m in model.modules() if isinstance(m, FactorizedConv2d))
    conv.forced_deploy_form = 'fastest'
    with pytest.raises(ValueError, match=r"forced_deploy_form='fastest' is not allowed"):
        conv.fuse()
    conv.forced_deploy_form = None
    model.switch_to_deploy()
    with pytest.raises(ValueError, match='already in deploy form'):
        calibrate_deploy_forms(model, torch.randn(1, 3, 64, 64))
    assert calibrate_deploy_forms(_backbone('ResNet50-Shared'), torch.randn(1, 3, 64, 64), reps=1) == {}


def test_hook_calibrates_then_folds():
    backbone = _backbone()
    model = SimpleNamespace(backbone=backbone)
    hook = HOOKS.build(dict(type='SwitchToDeployHook', calibrate_shape=(64, 64), calibrate_reps=1))
    hook.before_test(SimpleNamespace(model=model))
    assert backbone.deploy
    forced = [m.forced_deploy_form for m in backbone.modules() if isinstance(m, FactorizedConv2d)]
    assert forced == []  # folded away: no factorised conv is left
    for bad in ((64,), (16, 64), (64.0, 64), (True, 64)):
        with pytest.raises(ValueError, match='calibrate_shape=.* is not allowed'):
            HOOKS.build(dict(type='SwitchToDeployHook', calibrate_shape=bad))
    with pytest.raises(ValueError, match='calibrate_reps=0 is not allowed'):
        HOOKS.build(dict(type='SwitchToDeployHook', calibrate_reps=0))


def test_backbone_deploy_forms_argument_builds_the_recorded_structure():
    register_all_modules(init_default_scope=False)
    cfg = dict(paper_backbone_cfg('ResNet34-S48U1*'), deploy=True, deploy_forms={'layer1.1.conv1': 'merged'})
    model = MODELS.build(cfg)
    assert isinstance(model.layer1[1].conv1, nn.Conv2d) and isinstance(model.layer1[1].conv2, nn.Sequential)
    for forms, message in (
        ({'layer1.0.conv1': 'merged'}, 'names layer1.0.conv1, which are not factorised convolutions'),
        ({'layer1.1.conv1': 'fast'}, "has the forms {'layer1.1.conv1': 'fast'}: allowed are"),
        (['layer1.1.conv1'], "deploy_forms=\\['layer1.1.conv1'\\] is not allowed"),
    ):
        with pytest.raises(ValueError, match=message):
            MODELS.build(dict(paper_backbone_cfg('ResNet34-S48U1*'), deploy_forms=forms))
