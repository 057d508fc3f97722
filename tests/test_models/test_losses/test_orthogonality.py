import pytest
import torch

from mmbasis.models import SharedBasisMobileNetV2, SharedBasisResNet, orthogonality_loss, singular_value_spread
from mmbasis.models.layers import BasisGroup


def _loop_sq_error(rows):
    """Sum of squared entries of B B^T - I by explicit loops (independent of the implementation)."""
    n = rows.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            v = float(rows[i] @ rows[j]) - (1.0 if i == j else 0.0)
            total += v * v
    return total, n * n


def _groups(seed=0):
    g = torch.Generator().manual_seed(seed)
    p = [torch.nn.Parameter(torch.randn(r, 4, 3, 3, generator=g) * 0.2) for r in (3, 2, 5)]
    q = torch.nn.Parameter(torch.randn(4, 6, 1, 1, generator=g) * 0.3)
    return [
        BasisGroup('conv3x3', 'a', [('a1', p[0]), ('a2', p[1])]),
        BasisGroup('conv3x3', 'b', [('b', p[2])]),
        BasisGroup('conv1x1', 'c', [('c', q)]),
    ]


def test_paper_pooling_matches_loops():
    groups = _groups()
    fam = {}
    for g in groups:
        sq, n = _loop_sq_error(g.matrix().detach())
        fam.setdefault(g.family, [0.0, 0])
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
    assert orthogonality_loss(separate)[0].item() == pytest.approx(0.0)
    assert orthogonality_loss(joint)[0].item() == pytest.approx(4 / 16)  # 4 off-diagonal ones in a 4x4


def official_cifar10_loss(stages):
    """The official CIFAR-10 regulariser with ``include_unique_basis=True`` (ssregibility/Net_RL2 @ 936a886,
    ``train_cifar10.py``, ``train_basis_single``), transcribed with its loops: per stage, B = [shared; the unique
    bases of every shared block, conv1 then conv2], D = (B B^T - I)^2; ``sim`` adds the rows of the shared
    elements against every row, and each unique block against itself; ``avg_sim = sim / cnt_sim`` over stages.

    ``stages``: list of ``(shared, [(unique_conv1, unique_conv2) per shared block])``.
    """
    sim, cnt_sim = 0, 0
    for shared, blocks in stages:
        num_shared_basis = shared.shape[0]
        num_unique_basis = blocks[0][0].shape[0]
        all_basis = (shared,)
        for u1, u2 in blocks:
            all_basis += (u1, u2)
        num_all_basis = num_shared_basis + num_unique_basis * 2 * len(blocks)
        B = torch.cat(all_basis).view(num_all_basis, -1)
        D = (torch.mm(B, torch.t(B)) - torch.eye(num_all_basis, num_all_basis)) ** 2
        sim += torch.sum(D[0:num_shared_basis, :])
        cnt_sim += num_shared_basis * num_all_basis
        for i in range(1, len(blocks) + 1):
            for j in range(2):
                idx_base = num_shared_basis + (i - 1) * num_unique_basis * 2 + num_unique_basis * j
                sim += torch.sum(D[idx_base : idx_base + num_unique_basis, idx_base : idx_base + num_unique_basis])
                cnt_sim += num_unique_basis**2
    return sim / cnt_sim


def test_include_unique_is_the_official_cifar10_formula():
    """Value and gradient equal the official formula on the same tensors (two stages, three shared blocks)."""
    g = torch.Generator().manual_seed(0)

    def param(*shape):
        return torch.nn.Parameter(torch.randn(*shape, generator=g) * 0.3)

    stages = [
        (param(3, 4, 3, 3), [(param(2, 4, 3, 3), param(2, 4, 3, 3)) for _ in range(3)]),
        (param(5, 6, 3, 3), [(param(2, 6, 3, 3), param(2, 6, 3, 3)) for _ in range(2)]),
    ]
    groups = [
        BasisGroup(
            'conv3x3',
            f'layer{i}.shared_basis',
            [('s', s)],
            unique=[(f'{j}.{k}', u) for j, pair in enumerate(blocks) for k, u in enumerate(pair)],
        )
        for i, (s, blocks) in enumerate(stages)
    ]
    params = [p for s, blocks in stages for p in (s, *[u for pair in blocks for u in pair])]
    ours, _ = orthogonality_loss(groups, include_unique=True)
    ref = official_cifar10_loss(stages)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    grads_ours = torch.autograd.grad(ours, params)
    grads_ref = torch.autograd.grad(ref, params)
    for a, b in zip(grads_ours, grads_ref):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-8)
    # the regularised ImageNet/CIFAR-100 formula ignores the unique bases
    shared_only, _ = orthogonality_loss(groups, include_unique=False)
    assert shared_only.item() != pytest.approx(ours.item())


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
    assert lo == pytest.approx(1.0, abs=1e-4) and hi == pytest.approx(1.0, abs=1e-4)


def test_invalid():
    with pytest.raises(ValueError, match="pooling='mean'"):
        orthogonality_loss(_groups(), pooling='mean')
    with pytest.raises(ValueError, match='no shared bases'):
        orthogonality_loss([])
    assert SharedBasisMobileNetV2(shared_convs=()).basis_groups() == []


# ------------------------------------------------------------------------------------------------ exact and cheap
def reference_loss(groups, pooling='paper', include_unique=False):
    """The formula as first implemented here (autograd through the full masked Gram matrix of every group): the
    closed-form implementation must give the same values and gradients within float32 round-off."""
    fam, means, maxes = {}, [], []
    for g in groups:
        shared = torch.cat([p.flatten(1) for _, p in g.shared])
        rows = torch.cat([shared] + [p.flatten(1) for _, p in g.unique]) if include_unique and g.unique else shared
        n_s, n = shared.shape[0], rows.shape[0]
        err = rows @ rows.t() - torch.eye(n)
        mask = torch.zeros(n, n, dtype=torch.bool)
        mask[:n_s, :] = True
        start = n_s
        for _, u in g.unique if include_unique else ():
            mask[start : start + u.shape[0], start : start + u.shape[0]] = True
            start += u.shape[0]
        masked = err[mask]
        sq, count = masked.pow(2).sum(), int(mask.sum())
        acc = fam.setdefault(g.family, [0.0, 0])
        acc[0], acc[1] = acc[0] + sq, acc[1] + count
        means.append(sq / count)
        maxes.append(masked.detach().abs().max())
    loss = sum(s / c for s, c in fam.values()) if pooling == 'paper' else torch.stack(means).mean()
    return loss, torch.stack(maxes).max()


def _perturbed_groups(backbone, scale=0.05):
    """The backbone's groups, bases moved away from their orthogonal start (a real gradient everywhere)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for group in backbone.basis_groups():
            for _, p in (*group.shared, *group.unique):
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return backbone.basis_groups()


def _paper_backbone(name):
    from mmdet.registry import MODELS

    from mmbasis.models.archs import paper_backbone_cfg

    torch.manual_seed(0)
    return MODELS.build(paper_backbone_cfg(name))


# ResNet34-S48U1*: joint groups (two bases per stage), 3x3, rows < columns (stage 4: 768 x 4608), unique bases;
# ResNet50-Shared++: two families, the 1x1 expansions are tall (4p x p); MobileNetV2-Shared++: expansion (tall)
# and projection families
PAPER_NAMES = ('ResNet34-S48U1*', 'ResNet50-Shared++', 'MobileNetV2-Shared++')


@pytest.mark.parametrize(
    'name, pooling, include_unique',
    [(n, 'paper', False) for n in PAPER_NAMES]
    + [(n, 'basis', False) for n in PAPER_NAMES]
    + [('ResNet34-S48U1*', 'paper', True), ('ResNet34-S48U1*', 'basis', True)],
)
def test_closed_form_equals_the_reference_formula_on_paper_shapes(name, pooling, include_unique):
    groups = _perturbed_groups(_paper_backbone(name))
    assert any(g.unique for g in groups) or not include_unique  # the variant has unique bases to penalise
    params = [p for g in groups for _, p in (*g.shared, *g.unique)]
    ref, ref_max = reference_loss(groups, pooling, include_unique)
    ref_grads = torch.autograd.grad(ref, params, allow_unused=True)
    loss, max_err = orthogonality_loss(groups, pooling, include_unique)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(ref.item(), rel=2e-5)
    assert max_err.item() == pytest.approx(ref_max.item(), rel=1e-5)
    for a, b in zip(grads, ref_grads):
        if b is None:  # not penalised (unique bases without include_unique)
            assert a is None or not a.any()
            continue
        scale = b.abs().max()
        assert scale > 0 and (a - b).abs().max() <= 1e-4 * scale


def test_tall_bases_use_the_small_gram_and_the_floor_stays_exact():
    # a 4p x p expansion with orthonormal columns sits exactly at the floor (n - m) / n^2
    q = torch.nn.Parameter(torch.linalg.qr(torch.randn(64, 16))[0].reshape(64, 16, 1, 1).contiguous())
    group = [BasisGroup('conv1x1', 'e', [('e', q)])]
    loss, max_err = orthogonality_loss(group)
    assert loss.item() == pytest.approx((64 - 16) / 64**2, rel=1e-5)
    ref_loss, ref_max = reference_loss(group)
    assert max_err.item() == pytest.approx(ref_max.item(), rel=1e-5)
    loss.backward()
    assert q.grad.abs().max() < 1e-6  # at the floor the gradient 4 B (B^T B - I) vanishes
    no_max, nan = orthogonality_loss(group, max_error=False)
    assert no_max.item() == loss.item() and torch.isnan(nan)


def _matmul_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize('name', PAPER_NAMES)
def test_forward_and_backward_take_two_products_of_the_smaller_gram(name):
    """What makes the regulariser cheap, counted (not timed): one Gram product in the forward, one product in the
    backward, each of the smaller side (``min(n, m)^2 max(n, m)`` multiply-adds); autograd through ``B @ B.T`` takes
    three products of ``n^2 m`` (3x the bound on ResNet34-S48U1*, 5.8x on ResNet50-Shared++). The diagnostic
    (``max_error``) is free for wide bases."""
    groups = _perturbed_groups(_paper_backbone(name))
    sizes = [(sum(p.shape[0] for _, p in g.shared), g.shared[0][1][0].numel()) for g in groups]
    minimal = sum(2 * min(n, m) ** 2 * max(n, m) for n, m in sizes)  # FLOPs (2 per multiply-add) of one product

    wide = all(n <= m for n, m in sizes)

    def step():  # with the diagnostic (the default) where it is free
        loss, _ = orthogonality_loss(groups) if wide else orthogonality_loss(groups, max_error=False)
        loss.backward()

    flops = _matmul_flops(step)
    assert flops <= 2 * minimal * 1.001
    if name == 'ResNet34-S48U1*':  # the Gram is symmetric: only the blocks on and above the diagonal are multiplied
        assert flops <= 1.7 * minimal
