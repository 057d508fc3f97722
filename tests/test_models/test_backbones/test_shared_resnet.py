import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from mmbasis.models import PAPER_BACKBONE_PARAMS, SharedBasisResNet, paper_backbone_cfg
from mmbasis.models.layers import BasisConv2d, FactorizedConv2d
from mmdet.registry import MODELS
from tests.helpers import check_norm_state, num_params, randomize_bn

SMALL = dict(base_channels=8)
S_STAR = dict(depth=34, shared_rank=2, unique_rank=1, basis_sharing='conv', **SMALL)
S_SINGLE = dict(depth=34, shared_rank=2, unique_rank=1, basis_sharing='stage', **SMALL)
R50_PP = dict(depth=50, shared_convs=('conv2', 'conv3'), basis_sharing='conv', **SMALL)


@pytest.mark.parametrize('name', [n for n in PAPER_BACKBONE_PARAMS if n.startswith('ResNet')])
def test_paper_parameter_counts(name):
    model = MODELS.build(paper_backbone_cfg(name))
    assert num_params(model) == PAPER_BACKBONE_PARAMS[name]


@pytest.mark.parametrize('cfg, channels', [
    (dict(depth=18, shared_rank=2, unique_rank=1, **SMALL), [8, 16, 32, 64]),
    (S_STAR, [8, 16, 32, 64]),
    (S_SINGLE, [8, 16, 32, 64]),
    (dict(depth=50, **SMALL), [32, 64, 128, 256]),
    (R50_PP, [32, 64, 128, 256]),
    (dict(depth=101, **SMALL), [32, 64, 128, 256]),
    (dict(depth=18, shared_rank=None, **SMALL), [8, 16, 32, 64]),
    (dict(depth=18, shared_rank=3, unique_rank=0, **SMALL), [8, 16, 32, 64]),
])
def test_shapes_every_variant(cfg, channels):
    model = SharedBasisResNet(**cfg)
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == channels
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]


@pytest.mark.parametrize('out_indices', [(0, ), (1, 3), (3, ), (0, 1, 2, 3)])
def test_out_indices(out_indices):
    model = SharedBasisResNet(**S_STAR, out_indices=out_indices)
    outs = model(torch.randn(2, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [8 * 2**i for i in out_indices]


def test_paper_resnet34_forward_224():
    model = MODELS.build(paper_backbone_cfg('ResNet34-S48U1*'))
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512]


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
    copies = []
    for conv in _uses(untied, 'layer3'):
        own = torch.nn.Parameter(conv.shared_basis.detach().clone())
        conv._shared = (own, )
        copies.append(own)
    x = torch.randn(2, 3, 32, 32)
    for model in (tied, untied):
        sum(o.pow(2).mean() for o in model(x)).backward()
    total = torch.stack([c.grad for c in copies]).sum(0)
    assert len(copies) == 10
    assert all(c.grad.abs().sum() > 0 for c in copies)  # every use contributes
    assert torch.allclose(tied.layer3.shared_basis.grad, total, rtol=1e-4, atol=1e-6)


def test_each_shared_tensor_once_everywhere():
    model = SharedBasisResNet(**S_STAR)
    shared = model.shared_bases()
    assert len(shared) == 8
    param_ids = [id(p) for p in model.parameters()]
    assert len(param_ids) == len(set(param_ids))
    assert all(param_ids.count(id(p)) == 1 for p in shared.values())
    keys = [k for k in model.state_dict() if 'shared_basis' in k]
    assert sorted(keys) == sorted(shared)
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4),
        paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'shared_basis': dict(lr_mult=0.5)})))
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


def test_with_cp_same_output_and_grads():
    torch.manual_seed(0)
    ref = SharedBasisResNet(**S_STAR, norm_eval=False, zero_init_residual=False)
    cp = SharedBasisResNet(**S_STAR, norm_eval=False, zero_init_residual=False, with_cp=True)
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


@pytest.mark.parametrize('kwargs, match', [
    (dict(depth=20), 'depth=20'),
    (dict(depth=34, shared_rank=0), 'shared_rank=0'),
    (dict(depth=34, shared_rank=64, unique_rank=1), 'larger than the layer width 64'),
    (dict(depth=34, shared_rank=4, unique_rank=-1), 'unique_rank=-1'),
    (dict(depth=34, unique_rank=2), 'unique_rank=2 needs a factorised basis'),
    (dict(depth=34, shared_rank=4, basis_sharing='double'), "basis_sharing='double'"),
    (dict(depth=34, shared_rank=4, shared_convs=('conv3', )), 'conv3'),
    (dict(depth=50, shared_convs=('conv2', 'conv3'), basis_sharing='stage'), "basis_sharing='conv'"),
    (dict(depth=34, shared_rank=4, rank_multipliers=(1, 2)), 'rank_multipliers'),
    (dict(depth=34, out_indices=(4, )), 'out_indices'),
    (dict(depth=34, frozen_stages=5), 'frozen_stages=5'),
    (dict(depth=34, num_stages=5), 'num_stages=5'),
    (dict(depth=34, strides=(1, 2)), 'strides'),
    (dict(depth=34, style='tf'), "style='tf'"),
    (dict(depth=34, pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='a.pth')), 'cannot be given'),
    (dict(depth=34, dcn=dict(type='DCNv2', deform_groups=1), stage_with_dcn=(True, ) * 4), 'DCN'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SharedBasisResNet(base_channels=64 if 'base_channels' not in kwargs else kwargs.pop('base_channels'),
                          **kwargs)


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


@pytest.mark.parametrize('cfg', [
    S_STAR, S_SINGLE, R50_PP,
    dict(depth=18, shared_rank=14, unique_rank=2, base_channels=16, deep_stem=True, avg_down=True),
    dict(depth=18, shared_rank=None, **SMALL)])
def test_deploy_equivalence_and_strict_reload(cfg):
    model = SharedBasisResNet(**cfg)
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    for a, b in zip(before, after):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    kinds = {type(m) for m in model.modules()}
    assert not any(issubclass(k, (torch.nn.modules.batchnorm._BatchNorm, BasisConv2d, FactorizedConv2d))
                   for k in kinds)
    assert model.basis_groups() == [] and model.shared_bases() == {}
    deployed = SharedBasisResNet(**cfg, deploy=True)
    deployed.load_state_dict(model.state_dict(), strict=True)
    deployed.eval()
    with torch.no_grad():
        for a, b in zip(after, deployed(x)):
            assert torch.equal(a, b)


def test_deploy_refuses_group_norm():
    model = SharedBasisResNet(**S_STAR, norm_cfg=dict(type='GN', num_groups=1))
    with pytest.raises(TypeError, match='GroupNorm'):
        model.switch_to_deploy()
