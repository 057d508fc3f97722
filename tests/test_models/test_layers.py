import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmbasis.models.layers import (
    BasisConv2d,
    FactorizedConv2d,
    SharedBasisStage,
    bn_scale_shift,
    deploy_form,
    fuse_conv_norm,
)
from tests.helpers import randomize_bn


def test_basis_conv_is_one_conv_over_unique_and_shared():
    stage = SharedBasisStage()
    shared = stage.add_shared_basis('shared_basis', 6, 8, 3)
    conv = BasisConv2d(8, 2, shared, kernel_size=3, padding=1)
    x = torch.randn(2, 8, 10, 10)
    expected = torch.cat([F.conv2d(x, conv.unique_basis, padding=1), F.conv2d(x, shared, padding=1)], dim=1)
    assert torch.allclose(conv(x), expected, atol=1e-5)
    assert conv.rank == 8 and conv.full_weight().shape == (8, 8, 3, 3)
    # the shared tensor is referenced, not registered by the layer
    assert [n for n, _ in conv.named_parameters()] == ['unique_basis']
    assert conv.shared_basis is shared


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(in_channels=8, unique_rank=-1), 'unique_rank'),
        (dict(in_channels=8, unique_rank=0), 'at least one element'),
    ],
)
def test_basis_conv_invalid(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BasisConv2d(**kwargs)


def test_basis_conv_shape_mismatch():
    shared = nn.Parameter(torch.randn(4, 8, 3, 3))
    with pytest.raises(ValueError, match=r'\(4, 8, 3, 3\)'):
        BasisConv2d(16, 1, shared, kernel_size=3)


# MACs per output position: factorised R (S k^2 + T) vs merged S k^2 T, worked out by hand:
# (16, 16, 3, 1): 4 * (144 + 16) = 640 < 2304 -> factorised; (4, 32, 30, 2): 32 * (36 + 32) = 2176 > 1152 -> merged
@pytest.mark.parametrize('cin, cout, s, u, form', [(16, 16, 3, 1, 'factorized'), (4, 32, 30, 2, 'merged')])
def test_factorized_fuse_is_exact_and_cheapest(cin, cout, s, u, form):
    stage = SharedBasisStage()
    shared = stage.add_shared_basis('shared_basis', s, cin, 3)
    f = FactorizedConv2d(cin, cout, u, shared)
    out_bn = nn.BatchNorm2d(cout)
    randomize_bn(f)
    randomize_bn(out_bn, seed=1)
    f.eval()
    out_bn.eval()
    x = torch.randn(2, cin, 9, 9)
    fused = f.fuse(out_bn)
    assert torch.allclose(out_bn(f(x)), fused(x), atol=1e-4, rtol=1e-4)
    assert deploy_form(cin, cout, s + u, 3) == form
    assert isinstance(fused, nn.Conv2d) == (form == 'merged')


def test_stage_registers_each_basis_once_and_joint_init_is_orthogonal():
    stage = SharedBasisStage()
    a = stage.add_shared_basis('shared_basis_conv1', 5, 4, 3, family='conv3x3')
    b = stage.add_shared_basis('shared_basis_conv2', 5, 4, 3, family='conv3x3', joint_with='shared_basis_conv1')
    stage.append(BasisConv2d(4, 1, a))
    stage.append(BasisConv2d(4, 1, b))
    names = [n for n, _ in stage.named_parameters()]
    assert names.count('shared_basis_conv1') == 1 and names.count('shared_basis_conv2') == 1
    assert len(stage) == 2  # parameters do not change the Sequential's blocks
    groups = stage.basis_groups('layer1')
    assert len(groups) == 1 and groups[0].name == 'layer1.shared_basis_conv1+shared_basis_conv2'
    m = groups[0].matrix()
    assert torch.allclose(m @ m.t(), torch.eye(10), atol=1e-5)  # jointly orthonormal rows
    assert [n for n, _ in groups[0].unique] == ['layer1.0.unique_basis', 'layer1.1.unique_basis']


def test_stage_invalid_basis():
    stage = SharedBasisStage()
    with pytest.raises(ValueError, match="start with 'shared_basis'"):
        stage.add_shared_basis('basis', 4, 4)
    with pytest.raises(ValueError, match='rank'):
        stage.add_shared_basis('shared_basis', 0, 4)
    stage.add_shared_basis('shared_basis_a', 4, 4, 3)
    with pytest.raises(ValueError, match='cannot be joint'):
        stage.add_shared_basis('shared_basis_b', 4, 8, 3, joint_with='shared_basis_a')
    with pytest.raises(ValueError, match='not a shared basis'):
        stage.add_shared_basis('shared_basis_c', 4, 4, 3, joint_with='nope')


def test_fuse_conv_norm_and_gn_refused():
    conv = nn.Conv2d(3, 6, 3, padding=1, groups=3)
    bn = nn.BatchNorm2d(6)
    randomize_bn(bn)
    bn.eval()
    x = torch.randn(1, 3, 5, 5)
    assert torch.allclose(fuse_conv_norm(conv, bn)(x), bn(conv(x)), atol=1e-5)
    with pytest.raises(TypeError, match='GroupNorm'):
        bn_scale_shift(nn.GroupNorm(2, 6), 6, conv.weight)
