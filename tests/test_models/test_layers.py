import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmbasis.models.layers import BasisConv2d, SharedBasisStage


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
