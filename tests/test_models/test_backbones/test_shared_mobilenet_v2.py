import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.optim import build_optim_wrapper

from mmbasis.models import SharedBasisMobileNetV2
from mmbasis.models.layers import BasisConv2d
from tests.helpers import assert_deploy_build_equals, check_norm_state, num_params, randomize_bn, untie

SHARED_PP = dict(shared_convs=('expand_conv', 'linear_conv'))


def test_plain_official_layout_count():
    # official Net_RL2 MobileNetV2 without classifier: 3,507,272 - 1,281,000 (paper digest 7.1)
    assert num_params(SharedBasisMobileNetV2(shared_convs=())) == 2_226_272


@pytest.mark.parametrize('variant', ['official', 'mmdet'])
@pytest.mark.parametrize('shared', [('expand_conv',), ('expand_conv', 'linear_conv')])
def test_shapes(variant, shared):
    model = SharedBasisMobileNetV2(variant=variant, shared_convs=shared, out_indices=tuple(range(8)))
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 24, 32, 64, 96, 160, 320, 1280]
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 4, 2, 2, 2]


def test_widen_factor_and_default_out_indices():
    outs = SharedBasisMobileNetV2(widen_factor=0.5)(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 16, 48, 1280]
    wide = SharedBasisMobileNetV2(widen_factor=1.5, **SHARED_PP)
    assert [o.shape[1] for o in wide(torch.randn(1, 3, 64, 64))] == [40, 48, 144, 1920]
    assert tuple(wide.layer4.shared_basis_expand_conv.shape) == (576, 96, 1, 1)
    assert tuple(wide.layer4.shared_basis_linear_conv.shape) == (96, 576, 1, 1)


def test_mmdet_variant_matches_mmdet_mobilenet_v2_layout():
    ours = SharedBasisMobileNetV2(variant='mmdet', shared_convs=())
    theirs = MODELS.build(dict(type='MobileNetV2'))
    assert num_params(ours) == num_params(theirs)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())


def test_sharing_is_real_and_once():
    model = SharedBasisMobileNetV2(**SHARED_PP)
    for i in (3, 4, 5, 6):
        stage = getattr(model, f'layer{i}')
        uses = [m for m in stage.modules() if isinstance(m, BasisConv2d)]
        assert len(uses) == 2 * (len(stage) - 1)
        assert sum(u.shared_basis is stage.shared_basis_expand_conv for u in uses) == len(stage) - 1
        assert sum(u.shared_basis is stage.shared_basis_linear_conv for u in uses) == len(stage) - 1
    assert not any(isinstance(m, BasisConv2d) for m in model.layer2.modules())
    ids = [id(p) for p in model.parameters()]
    assert len(ids) == len(set(ids))
    assert sorted(k for k in model.state_dict() if 'shared_basis' in k) == sorted(model.shared_bases())
    wrapper = build_optim_wrapper(
        model, dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-5), paramwise_cfg=dict(norm_decay_mult=0.0))
    )
    assert sum(len(g['params']) for g in wrapper.optimizer.param_groups) == len(ids)
    assert {g.family for g in model.basis_groups()} == {'expand_conv', 'linear_conv'}


def test_gradient_accumulates_from_every_block():
    torch.manual_seed(0)
    tied = SharedBasisMobileNetV2()
    untied = copy.deepcopy(tied)
    copies = untie(m for m in untied.layer4.modules() if isinstance(m, BasisConv2d))
    x = torch.randn(2, 3, 64, 64)
    for model in (tied, untied):
        sum(o.pow(2).mean() for o in model(x)).backward()
    assert len(copies) == 3
    assert torch.allclose(tied.layer4.shared_basis_expand_conv.grad, sum(c.grad for c in copies), rtol=1e-4, atol=1e-7)


def test_norm_eval_frozen_stages_with_cp():
    model = SharedBasisMobileNetV2(**SHARED_PP, frozen_stages=3, norm_eval=True)
    model.train()
    assert check_norm_state(model.modules(), False)
    assert (
        not model.layer3.shared_basis_expand_conv.requires_grad and model.layer4.shared_basis_expand_conv.requires_grad
    )
    assert all(not p.requires_grad for p in model.conv1.parameters())
    torch.manual_seed(0)
    ref = SharedBasisMobileNetV2(**SHARED_PP)
    cp = SharedBasisMobileNetV2(**SHARED_PP, with_cp=True)
    cp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    for m in (ref, cp):
        sum(o.pow(2).mean() for o in m(x)).backward()
    for (n, p), q in zip(ref.named_parameters(), cp.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), n


def test_frozen_stages_without_norm_eval():
    model = SharedBasisMobileNetV2(**SHARED_PP, frozen_stages=4)
    model.train()
    for i in range(1, 8):
        layer = getattr(model, f'layer{i}')
        frozen = i <= 4
        assert check_norm_state(layer.modules(), not frozen), i
        assert all(p.requires_grad != frozen for p in layer.parameters()), i
    assert check_norm_state(model.conv1.modules(), False) and check_norm_state(model.conv2.modules(), True)
    assert (
        not model.layer4.shared_basis_linear_conv.requires_grad and model.layer5.shared_basis_linear_conv.requires_grad
    )
    model.train()  # a second call keeps them frozen
    assert not model.layer3.shared_basis_expand_conv.requires_grad


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (dict(with_eca=True), ValueError, 'with_eca=True'),
        (dict(shared_convs=(), with_eca=True), ValueError, 'with_eca=True'),
        (dict(norm_eval='yes'), TypeError, "norm_eval='yes'"),
        (dict(with_cp=1), TypeError, 'with_cp=1'),
        (dict(shared_stages=(2, 2)), ValueError, r'shared_stages=\(2, 2\)'),
        (dict(shared_stages=(True,)), ValueError, 'shared_stages'),
        (dict(shared_convs='expand_conv'), ValueError, "shared_convs='expand_conv'"),
        (dict(out_indices=7), ValueError, 'out_indices=7'),
        (dict(out_indices=(1, 1)), ValueError, 'distinct'),
        (dict(frozen_stages=True), ValueError, 'frozen_stages=True'),
        (dict(frozen_stages=8), ValueError, r'frozen_stages=8 is not allowed: it must be an integer in \[-1, 7\]'),
        (dict(frozen_stages=-2), ValueError, r'frozen_stages=-2 .* in \[-1, 7\]'),
    ],
)
def test_invalid_argument_types(kwargs, error, match):
    with pytest.raises(error, match=match):
        SharedBasisMobileNetV2(**kwargs)


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(widen_factor=0), 'widen_factor=0'),
        (dict(shared_convs=('depthwise_conv',)), 'depthwise_conv'),
        (dict(shared_stages=(0,)), 'shared_stages'),
        (dict(shared_stages=(6,)), 'shared_stages'),
        (dict(variant='torchvision'), "variant='torchvision'"),
        (dict(out_indices=(8,)), 'out_indices'),
        (dict(frozen_stages=8), 'frozen_stages=8'),
        (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='a.pth')), 'cannot be given'),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SharedBasisMobileNetV2(**kwargs)


@pytest.mark.parametrize('cfg', [dict(), SHARED_PP, dict(SHARED_PP, with_eca=True), dict(variant='mmdet')])
def test_deploy_equivalence_and_strict_reload(cfg):
    model = SharedBasisMobileNetV2(**cfg, out_indices=(2, 4, 7))
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    for a, b in zip(before, after):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, BasisConv2d)) for m in model.modules())
    build = lambda: SharedBasisMobileNetV2(**cfg, out_indices=(2, 4, 7), deploy=True)  # noqa: E731
    assert_deploy_build_equals(build, model.state_dict(), x, after)


def test_deploy_keeps_frozen_stages_frozen():
    """Both backbones share one deploy path, which re-applies frozen_stages and norm_eval to the folded modules."""
    model = SharedBasisMobileNetV2(shared_convs=('expand_conv', 'linear_conv'), frozen_stages=4, norm_eval=True)
    model.train()
    model.switch_to_deploy()
    assert model.training
    for i in range(1, 5):
        assert all(not p.requires_grad for p in getattr(model, f'layer{i}').parameters()), i
    assert all(not p.requires_grad for p in model.conv1.parameters())
    assert all(p.requires_grad for p in model.layer5.parameters())
