import pytest
import torch

from mmbasis.models import SharedBasisMobileNetV2, SharedBasisResNet, orthogonality_loss, singular_value_spread
from mmbasis.models.layers import BasisGroup


def _loop_sq_error(rows):
    """Sum of squared entries of B B^T - I by explicit loops (independent of the implementation)."""
    n = rows.shape[0]
    total = 0.
    for i in range(n):
        for j in range(n):
            v = float(rows[i] @ rows[j]) - (1. if i == j else 0.)
            total += v * v
    return total, n * n


def _groups(seed=0):
    g = torch.Generator().manual_seed(seed)
    p = [torch.nn.Parameter(torch.randn(r, 4, 3, 3, generator=g) * 0.2) for r in (3, 2, 5)]
    q = torch.nn.Parameter(torch.randn(4, 6, 1, 1, generator=g) * 0.3)
    return [BasisGroup('conv3x3', 'a', [('a1', p[0]), ('a2', p[1])]),
            BasisGroup('conv3x3', 'b', [('b', p[2])]),
            BasisGroup('conv1x1', 'c', [('c', q)])]


def test_paper_pooling_matches_loops():
    groups = _groups()
    fam = {}
    for g in groups:
        sq, n = _loop_sq_error(g.matrix().detach())
        fam.setdefault(g.family, [0., 0])
        fam[g.family][0] += sq
        fam[g.family][1] += n
    expected = sum(sq / n for sq, n in fam.values())
    loss, max_err = orthogonality_loss(groups)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.dtype == torch.float32
    per = [_loop_sq_error(g.matrix().detach()) for g in groups]
    basis_loss, _ = orthogonality_loss(groups, pooling='basis')
    assert basis_loss.item() == pytest.approx(sum(sq / n for sq, n in per) / 3, rel=1e-5)
    full = max(float((g.matrix() @ g.matrix().t() - torch.eye(g.matrix().shape[0])).abs().max()) for g in groups)
    assert max_err.item() == pytest.approx(full, rel=1e-5)


def test_joint_group_penalises_cross_terms():
    a = torch.nn.Parameter(torch.eye(4)[:2].view(2, 4, 1, 1).clone())
    b = torch.nn.Parameter(torch.eye(4)[:2].view(2, 4, 1, 1).clone())  # orthonormal, but equal to a
    joint = [BasisGroup('f', 'ab', [('a', a), ('b', b)])]
    separate = [BasisGroup('f', 'a', [('a', a)]), BasisGroup('f', 'b', [('b', b)])]
    assert orthogonality_loss(separate)[0].item() == pytest.approx(0.)
    assert orthogonality_loss(joint)[0].item() == pytest.approx(4 / 16)  # 4 off-diagonal ones in a 4x4


def test_include_unique_mask():
    shared = torch.nn.Parameter(torch.randn(2, 3, 1, 1))
    u1 = torch.nn.Parameter(torch.randn(1, 3, 1, 1))
    u2 = torch.nn.Parameter(torch.randn(2, 3, 1, 1))
    g = BasisGroup('f', 'g', [('s', shared)], unique=[('u1', u1), ('u2', u2)])
    rows = torch.cat([shared.flatten(1), u1.flatten(1), u2.flatten(1)]).detach()
    err = (rows @ rows.t() - torch.eye(5)).pow(2)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[:2] = True
    mask[:, :2] = True
    mask[2, 2] = True
    mask[3:, 3:] = True  # u1-u2 cross terms are not penalised
    loss, _ = orthogonality_loss([g], include_unique=True)
    assert loss.item() == pytest.approx(float(err[mask].sum() / mask.sum()), rel=1e-5)
    assert orthogonality_loss([g], include_unique=False)[0].item() == pytest.approx(float(err[:2, :2].mean()),
                                                                                   rel=1e-5)


def test_float32_under_autocast_and_gradients():
    groups = _groups()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss, _ = orthogonality_loss(groups)
    assert loss.dtype == torch.float32
    ref, _ = orthogonality_loss(groups)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is not None for g in groups for _, p in g.shared)


def test_values_at_init_match_the_paper_digest():
    # digest 8.7: orthogonal init gives ~0 for rows < cols; the 1x1 expansion of ResNet50-Shared++ sits at
    # its floor sum(3p) / sum((4p)^2) = 2880 / 5,570,560
    torch.manual_seed(0)
    r34 = SharedBasisResNet(depth=34, shared_rank=48, unique_rank=1, basis_sharing='conv')
    assert orthogonality_loss(r34.basis_groups())[0].item() < 1e-10
    r50 = SharedBasisResNet(depth=50, shared_convs=('conv2', 'conv3'), basis_sharing='conv')
    conv1x1 = [g for g in r50.basis_groups() if g.family == 'conv1x1']
    assert orthogonality_loss(conv1x1)[0].item() == pytest.approx(2880 / 5_570_560, rel=1e-4)
    lo, hi = singular_value_spread(r34.basis_groups()[0])
    assert lo == pytest.approx(1., abs=1e-4) and hi == pytest.approx(1., abs=1e-4)


def test_invalid():
    with pytest.raises(ValueError, match="pooling='mean'"):
        orthogonality_loss(_groups(), pooling='mean')
    with pytest.raises(ValueError, match='no shared bases'):
        orthogonality_loss([])
    assert SharedBasisMobileNetV2(shared_convs=()).basis_groups() == []
