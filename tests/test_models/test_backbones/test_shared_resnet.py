import copy
import re

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import fuse_conv_bn
from mmcv.ops import ModulatedDeformConv2dPack
from mmdet.models.backbones import ResNet
from mmengine.optim import build_optim_wrapper

from mmbasis.models import SharedBasisResNet
from mmbasis.models.layers import BasisConv2d, FactorizedConv2d
from tests.helpers import assert_deploy_build_equals, check_norm_state, randomize_bn, untie

SMALL = dict(base_channels=8)
S_STAR = dict(depth=34, shared_rank=2, unique_rank=1, basis_sharing='conv', **SMALL)
S_SINGLE = dict(depth=34, shared_rank=2, unique_rank=1, basis_sharing='stage', **SMALL)
R50_PP = dict(depth=50, shared_convs=('conv2', 'conv3'), basis_sharing='conv', **SMALL)


@pytest.mark.parametrize(
    'cfg, channels',
    [
        (dict(depth=18, shared_rank=2, unique_rank=1, **SMALL), [8, 16, 32, 64]),
        (S_STAR, [8, 16, 32, 64]),
        (S_SINGLE, [8, 16, 32, 64]),
        (dict(depth=50, **SMALL), [32, 64, 128, 256]),
        (R50_PP, [32, 64, 128, 256]),
        (dict(depth=101, **SMALL), [32, 64, 128, 256]),
        (dict(depth=18, shared_rank=None, **SMALL), [8, 16, 32, 64]),
        (dict(depth=18, shared_rank=3, unique_rank=0, **SMALL), [8, 16, 32, 64]),
    ],
)
def test_shapes_every_variant(cfg, channels):
    model = SharedBasisResNet(**cfg)
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == channels
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]


@pytest.mark.parametrize('out_indices', [(0,), (1, 3), (3,), (0, 1, 2, 3)])
def test_out_indices(out_indices):
    model = SharedBasisResNet(**S_STAR, out_indices=out_indices)
    outs = model(torch.randn(2, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [8 * 2**i for i in out_indices]


def _uses(model, stage):
    return [m for m in getattr(model, stage).modules() if isinstance(m, BasisConv2d)]


def test_sharing_is_real_single_and_star():
    single = SharedBasisResNet(**S_SINGLE)
    convs = _uses(single, 'layer3')
    assert len(convs) == 10  # 5 shared blocks x 2 convs use one basis (the paper's "up to 10 layers")
    assert all(c.shared_basis is single.layer3.shared_basis for c in convs)
    star = SharedBasisResNet(**S_STAR)
    convs = _uses(star, 'layer3')
    assert sum(c.shared_basis is star.layer3.shared_basis_conv1 for c in convs) == 5
    assert sum(c.shared_basis is star.layer3.shared_basis_conv2 for c in convs) == 5


def test_gradient_accumulates_from_every_block():
    """The tied gradient equals the sum of the gradients of an untied copy (one tensor per use)."""
    torch.manual_seed(0)
    tied = SharedBasisResNet(**S_SINGLE, norm_eval=False, zero_init_residual=False)
    untied = copy.deepcopy(tied)
    copies = untie(_uses(untied, 'layer3'))
    x = torch.randn(2, 3, 32, 32)
    for model in (tied, untied):
        sum(o.pow(2).mean() for o in model(x)).backward()
    total = torch.stack([c.grad for c in copies]).sum(0)
    assert len(copies) == 10
    assert all(c.grad.abs().sum() > 0 for c in copies)  # every use contributes
    assert torch.allclose(tied.layer3.shared_basis.grad, total, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('cfg', [S_STAR, R50_PP])
def test_each_shared_tensor_once_everywhere(cfg):
    model = SharedBasisResNet(**cfg)
    shared = model.shared_bases()
    assert len(shared) == 8
    param_ids = [id(p) for p in model.parameters()]
    assert len(param_ids) == len(set(param_ids))
    assert all(param_ids.count(id(p)) == 1 for p in shared.values())
    keys = [k for k in model.state_dict() if 'shared_basis' in k]
    assert sorted(keys) == sorted(shared)
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4),
            paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'shared_basis': dict(lr_mult=0.5)}),
        ),
    )
    in_groups = [id(p) for g in wrapper.optimizer.param_groups for p in g['params']]
    assert len(in_groups) == len(set(in_groups)) == len(param_ids)
    lrs = {id(p): g['lr'] for g in wrapper.optimizer.param_groups for p in g['params']}
    assert all(lrs[id(p)] == pytest.approx(0.05) for p in shared.values())


def test_deepcopy_keeps_sharing():
    model = copy.deepcopy(SharedBasisResNet(**S_SINGLE))
    assert all(c.shared_basis is model.layer2.shared_basis for c in _uses(model, 'layer2'))


def test_norm_eval():
    model = SharedBasisResNet(**S_STAR, norm_eval=True)
    assert model.eval() is model and model.train() is model  # chainable, unlike mmdet's ResNet.train
    assert check_norm_state(model.modules(), False)
    model = SharedBasisResNet(**S_STAR, norm_eval=False)
    model.train()
    assert check_norm_state(model.modules(), True)


def test_frozen_stages_freeze_shared_bases():
    model = SharedBasisResNet(**S_STAR, frozen_stages=2, norm_eval=False)
    model.train()
    for stage in ('layer1', 'layer2'):
        layer = getattr(model, stage)
        assert not layer.shared_basis_conv1.requires_grad and not layer.shared_basis_conv2.requires_grad
        assert all(not p.requires_grad for p in layer.parameters())
        assert check_norm_state(layer.modules(), False)
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert check_norm_state(model.layer3.modules(), True)
    sum(o.sum() for o in model(torch.randn(2, 3, 32, 32))).backward()
    assert model.layer1.shared_basis_conv1.grad is None and model.layer3.shared_basis_conv1.grad is not None


@pytest.mark.parametrize('cfg', [S_STAR, R50_PP])
def test_with_cp_same_output_and_grads(cfg):
    torch.manual_seed(0)
    ref = SharedBasisResNet(**cfg, norm_eval=False, zero_init_residual=False)
    cp = SharedBasisResNet(**cfg, norm_eval=False, zero_init_residual=False, with_cp=True)
    cp.load_state_dict(ref.state_dict())
    assert all(b.with_cp for b in cp.modules() if hasattr(b, 'with_cp') and hasattr(b, 'conv1'))
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    outs = []
    for m in (ref, cp):
        y = m(x)
        sum(o.pow(2).mean() for o in y).backward()
        outs.append(y)
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-5)
    for (n, p), q in zip(ref.named_parameters(), cp.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize(
    'kwargs, match',
    [
        # mmbasis' own arguments
        (dict(depth=34, shared_rank=0), 'shared_rank=0'),
        (dict(depth=34, shared_rank=64, unique_rank=1), 'larger than the layer width 64'),
        (dict(depth=34, shared_rank=4, unique_rank=-1), 'unique_rank=-1'),
        (dict(depth=34, unique_rank=2), 'unique_rank=2 needs a factorised basis'),
        (dict(depth=34, shared_rank=4, basis_sharing='double'), "basis_sharing='double'"),
        (dict(depth=34, shared_rank=4, shared_convs=('conv3',)), 'conv3'),
        (dict(depth=34, shared_rank=4, shared_convs='conv1'), "shared_convs='conv1'"),
        (dict(depth=50, shared_convs=('conv2', 'conv3'), basis_sharing='stage'), "basis_sharing='conv'"),
        (dict(depth=50, shared_convs=('conv1', 'conv3'), basis_sharing='stage'), 'one shape'),
        (dict(depth=34, shared_rank=4, rank_multipliers=(1, 2)), 'rank_multipliers.*no entry for stage 2'),
        (dict(depth=34, shared_rank=4, rank_multipliers=(1, 0, 1, 1)), 'rank_multipliers'),
        (
            dict(depth=34, shared_rank=60, unique_rank=1, rank_multipliers=(1, 2, 4, 9)),
            'in stage 3 .* larger than the layer width 512',
        ),
        (dict(depth=50, shared_rank=48, unique_rank=17), 'rank 48\\+17=65 in stage 0 \\(conv2\\)'),
        (dict(depth=34, deploy='yes'), "deploy='yes'"),
        # stage indices mmdet lets through (frozen_stages=7 used to reach AttributeError: ... 'layer5' in train())
        (dict(depth=34, frozen_stages=7), r'frozen_stages=7 is not allowed: it must be an integer in \[-1, 4\]'),
        (dict(depth=34, frozen_stages=-2), r'frozen_stages=-2 .* in \[-1, 4\]'),
        (
            dict(depth=34, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(2,), frozen_stages=4),
            r'frozen_stages=4 .* in \[-1, 3\]',
        ),
        (dict(depth=34, frozen_stages=1.0), r'frozen_stages=1.0 .* integer'),
        (dict(depth=34, out_indices=(-1,)), r'out_indices=\(-1,\) is not allowed.*\(0, 1, 2, 3\)'),
        (dict(depth=34, out_indices=(1, 1)), r'out_indices=\(1, 1\) is not allowed.*distinct'),
        # mmdet arguments that conflict with shared convolutions
        (
            dict(depth=50, dcn=dict(type='DCNv2', deform_groups=1), stage_with_dcn=(False, True, True, True)),
            'DCN replaces conv2',
        ),
        (dict(depth=50, plugins=[dict(cfg=dict(type='ContextBlock', ratio=0.25), position='after_conv3')]), 'plugins'),
        (dict(depth=50, conv_cfg=dict(type='ConvWS')), "conv_cfg={'type': 'ConvWS'}"),
        # mmdet's own checks (bare asserts) come back as a ValueError that names the arguments and the check
        (dict(depth=34, out_indices=(4,)), r'out_indices=\(4,\).*max\(out_indices\) < num_stages'),
        (dict(depth=34, num_stages=5), 'num_stages=5.*num_stages'),
        (dict(depth=34, strides=(1, 2)), r'strides=\(1, 2\).*len\(strides\)'),
        (
            dict(depth=50, shared_convs=('conv3',), dcn='DCNv2', stage_with_dcn=(False, True, True, True)),
            r"dcn='DCNv2'.*isinstance\(dcn, dict\)",
        ),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SharedBasisResNet(**kwargs)


def test_unknown_depth_is_mmdets_error():
    with pytest.raises(KeyError, match='invalid depth 20'):
        SharedBasisResNet(depth=20)


def test_strict_state_dict_round_trip():
    a = SharedBasisResNet(**S_STAR)
    randomize_bn(a)
    b = SharedBasisResNet(**S_STAR)
    b.load_state_dict(a.state_dict(), strict=True)
    a.eval()
    b.eval()
    x = torch.randn(1, 3, 32, 32)
    for p, q in zip(a(x), b(x)):
        assert torch.equal(p, q)
    assert b.layer2[1].conv1.basis.shared_basis is b.layer2.shared_basis_conv1


@pytest.mark.parametrize(
    'cfg',
    [
        S_STAR,
        S_SINGLE,
        R50_PP,
        dict(depth=18, shared_rank=14, unique_rank=2, base_channels=16, deep_stem=True, avg_down=True),
        dict(depth=18, shared_rank=None, **SMALL),
        dict(
            depth=50,
            shared_rank=2,
            unique_rank=1,
            shared_convs=('conv1', 'conv2', 'conv3'),
            basis_sharing='conv',
            style='caffe',
            **SMALL,
        ),
        dict(depth=18, shared_rank=3, unique_rank=1, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), **SMALL),
    ],
)
def test_deploy_equivalence_and_strict_reload(cfg):
    """Folding is exact: in float64 the outputs agree to rounding (float32 would hide errors of ~1e-6)."""
    model = SharedBasisResNet(**cfg).double()
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    assert all(p.dtype == torch.float64 for p in model.parameters())  # folded modules keep the precision
    for a, b in zip(before, after):
        assert (a - b).abs().max() <= 1e-10 * a.abs().max()
    kinds = {type(m) for m in model.modules()}
    assert not any(issubclass(k, (torch.nn.modules.batchnorm._BatchNorm, BasisConv2d, FactorizedConv2d)) for k in kinds)
    leaves = [m for m in model.modules() if not list(m.children())]
    assert {type(m) for m in leaves} <= {nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Identity}
    assert all(m.bias is not None for m in leaves if isinstance(m, nn.Conv2d))
    assert model.basis_groups() == [] and model.shared_bases() == {}
    assert_deploy_build_equals(lambda: SharedBasisResNet(**cfg, deploy=True).double(), model.state_dict(), x, after)


def test_deploy_refuses_group_norm():
    model = SharedBasisResNet(**S_STAR, norm_cfg=dict(type='GN', num_groups=1))
    with pytest.raises(TypeError, match='GroupNorm'):
        model.switch_to_deploy()


def test_deploy_refuses_non_plain_convs():
    model = SharedBasisResNet(depth=18, shared_convs=(), conv_cfg=dict(type='ConvWS'), **SMALL)
    with pytest.raises(TypeError, match='ConvWS2d'):  # folding its raw weight would be silently wrong
        model.switch_to_deploy()


def test_dcn_on_unshared_conv2():
    model = SharedBasisResNet(
        depth=50,
        shared_convs=('conv3',),
        dcn=dict(type='DCNv2', deform_groups=1),
        stage_with_dcn=(False, True, True, True),
        **SMALL,
    )
    assert isinstance(model.layer2[1].conv2, ModulatedDeformConv2dPack)
    assert isinstance(model.layer1[1].conv2, nn.Conv2d)
    assert model.layer2[1].conv3.shared_basis is model.layer2.shared_basis
    assert [o.shape[1] for o in model(torch.randn(2, 3, 32, 32))] == [32, 64, 128, 256]
    with pytest.raises(TypeError, match='DCN'):
        model.switch_to_deploy()


def test_deploy_keeps_frozen_stages_and_mode():
    x = torch.randn(2, 3, 32, 32)
    model = SharedBasisResNet(**S_STAR, frozen_stages=1)
    randomize_bn(model)
    model.eval()
    with torch.no_grad():
        ref = model(x)
    model.switch_to_deploy()
    assert not any(m.training for m in model.modules())  # switching keeps the eval mode
    assert model.train() is model
    assert not model.layer1.training and model.layer2.training
    assert not any(p.requires_grad for p in [*model.conv1.parameters(), *model.layer1.parameters()])
    assert all(p.requires_grad for p in model.layer2.parameters())
    with torch.no_grad():  # no norm is left: training mode computes the same function
        for a, b in zip(ref, model(x)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    built = SharedBasisResNet(**S_STAR, frozen_stages=1, deploy=True)
    assert not any(p.requires_grad for p in [*built.conv1.parameters(), *built.layer1.parameters()])
    built.init_weights()  # mmdet's init_cfg (incl. the zero_init_residual override) still applies
    assert all(torch.isfinite(o).all() for o in built(x))


@pytest.mark.parametrize(
    'cfg', [S_STAR, dict(depth=50, shared_convs=('conv2', 'conv3'), basis_sharing='conv', **SMALL)]
)
def test_mmcv_fuse_conv_bn_is_safe(cfg):
    """mmcv's fuse_conv_bn (mmdet benchmark/test tools) must not mis-fuse the basis norms of the training form."""
    model = SharedBasisResNet(**cfg)
    randomize_bn(model)
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        fuse_conv_bn(model)
        for a, b in zip(ref, model(x)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
        model.switch_to_deploy()
        keys = set(model.state_dict())
        fuse_conv_bn(model)  # nothing left to fuse
        assert set(model.state_dict()) == keys
        for a, b in zip(ref, model(x)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('depth, shared', [(34, dict(shared_rank=2, unique_rank=1)), (50, dict())])
def test_mmdet_resnet_weights_load_by_name(depth, shared):
    """Stem and first blocks keep mmdet's keys, so ImageNet ResNet weights load into them by name."""
    ref = ResNet(depth=depth, **SMALL)
    randomize_bn(ref)
    model = SharedBasisResNet(depth=depth, **shared, **SMALL)
    result = model.load_state_dict(ref.state_dict(), strict=False)
    assert result.missing_keys and result.unexpected_keys
    assert all(re.match(r'layer\d\.([1-9]\d*\.|shared_basis)', k) for k in result.missing_keys)
    assert all(re.match(r'layer\d\.[1-9]\d*\.', k) for k in result.unexpected_keys)
    own = model.state_dict()
    first = [k for k in ref.state_dict() if re.match(r'(conv1|bn1|layer\d\.0\.)', k)]
    assert 'layer2.0.downsample.0.weight' in first
    assert all(torch.equal(own[k], ref.state_dict()[k]) for k in first)


def test_zero_init_residual_and_orthogonal_bases():
    model = SharedBasisResNet(**R50_PP)
    model.init_weights()
    for name in model.res_layers:
        stage = getattr(model, name)
        assert all(blk.norm3.weight.abs().sum() == 0 for blk in stage)  # last norm of every block
        b3 = stage.shared_basis_conv2.flatten(1)  # (p, 9p): orthonormal rows
        b1 = stage.shared_basis_conv3.flatten(1)  # (4p, p): rows cannot be orthonormal, columns are
        assert torch.allclose(b3 @ b3.t(), torch.eye(b3.shape[0]), atol=1e-5)
        assert torch.allclose(b1.t() @ b1, torch.eye(b1.shape[1]), atol=1e-5)
    model = SharedBasisResNet(**S_STAR, zero_init_residual=False)
    model.init_weights()
    for name in model.res_layers:
        stage = getattr(model, name)
        assert all(torch.all(blk.norm2.weight == 1) for blk in stage)
        joint = torch.cat([stage.shared_basis_conv1.flatten(1), stage.shared_basis_conv2.flatten(1)])
        assert torch.allclose(joint @ joint.t(), torch.eye(joint.shape[0]), atol=1e-5)  # jointly orthonormal


@pytest.mark.parametrize('style, first_strides', [('pytorch', ((1, 1), (2, 2))), ('caffe', ((2, 2), (1, 1)))])
def test_style_places_the_stride_in_the_first_block(style, first_strides):
    model = SharedBasisResNet(**R50_PP, style=style)
    assert (model.layer2[0].conv1.stride, model.layer2[0].conv2.stride) == first_strides
    assert all(blk.conv2.stride == (1, 1) for blk in list(model.layer2)[1:])  # shared bases run at stride 1
    assert [o.shape[-1] for o in model(torch.randn(2, 3, 32, 32))] == [8, 4, 2, 1]


def test_pretrained_is_a_deprecated_alias():
    with pytest.warns(UserWarning, match='deprecated'):
        model = SharedBasisResNet(**S_STAR, pretrained='ckpt.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='ckpt.pth')
