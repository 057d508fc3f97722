"""SwitchToDeployHook: a training checkpoint tested in deploy form, folded after the runner has loaded it."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.registry import HOOKS, MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmbasis  # noqa: F401
from tests.helpers import randomize_bn

CONFIG = str(Path(__file__).resolve().parents[2] / 'configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py')


def _detector():
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(CONFIG).model)
    randomize_bn(model.backbone)  # trained-looking BN statistics, as a loaded checkpoint has
    model.eval()
    return model


@pytest.mark.parametrize('wrap', ['none', 'tta'])
def test_before_test_folds_the_loaded_backbone_and_keeps_its_outputs(wrap):
    model = _detector()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model.backbone(x)
    runner_model = model if wrap == 'none' else DetTTAModel(module=model, tta_cfg=dict(nms=dict(type='nms')))
    hook = HOOKS.build(dict(type='SwitchToDeployHook'))
    hook.before_test(SimpleNamespace(model=runner_model))
    assert model.backbone.deploy and not model.backbone.basis_groups()
    with torch.no_grad():
        after = model.backbone(x)
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    hook.before_test(SimpleNamespace(model=runner_model))  # a second call is a no-op
    assert model.backbone.deploy


def test_a_backbone_without_deploy_form_is_an_error():
    model = _detector()
    model.backbone = MODELS.build(dict(type='ResNet', depth=18))
    with pytest.raises(TypeError, match='the backbone ResNet has no switch_to_deploy'):
        HOOKS.build(dict(type='SwitchToDeployHook')).before_test(SimpleNamespace(model=model))
