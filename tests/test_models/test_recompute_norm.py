"""FactorizedConv2d.recompute_norm / SharedBasisResNet(recompute_basis_norm=True): the normalised basis responses
are recomputed in the backward pass instead of stored; outputs, gradients and running statistics stay those of the
ordinary modules, and one map of R channels per factorised convolution is no longer stored."""

import copy

import pytest
import torch
import torch.nn as nn

from mmbasis.models import SharedBasisResNet
from mmbasis.models.layers import FactorizedConv2d


def saved_bytes(fn) -> int:
    """Bytes of the distinct tensors autograd stores for the backward pass while ``fn`` runs (a precise,
    load-independent memory measure)."""
    seen = {}

    def pack(t):
        seen[(t.data_ptr(), t.shape, t.dtype)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize('momentum', [0.1, None])
def test_factorized_conv_recomputed_equals_stored(momentum):
    torch.manual_seed(0)
    shared = nn.Parameter(torch.randn(6, 8, 3, 3))
    plain = FactorizedConv2d(8, 16, 2, shared, norm_cfg=dict(type='BN', momentum=momentum))
    ours = copy.deepcopy(plain)
    ours.basis._shared = (shared,)  # the deep copy got its own shared tensor: both reference the same one
    plain.basis._shared = (shared,)
    ours.recompute_norm = True
    for step in range(2):  # two steps: running statistics and num_batches_tracked evolve alike
        x = torch.randn(4, 8, 10, 10, requires_grad=True)
        shared.grad = None
        out_a = plain(x)
        out_a.square().mean().backward()
        grad_shared_a, grad_x_a = shared.grad.clone(), x.grad.clone()
        shared.grad, x.grad = None, None
        out_b = ours(x)
        out_b.square().mean().backward()
        assert torch.equal(out_a, out_b), step
        torch.testing.assert_close(x.grad, grad_x_a, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(shared.grad, grad_shared_a, rtol=1e-5, atol=1e-7)
        ga, gb = grads(plain), grads(ours)
        assert ga.keys() == gb.keys() and {'coeff.weight', 'basis_norm.weight', 'basis_norm.bias'} <= set(ga)
        for name in ga:
            torch.testing.assert_close(gb[name], ga[name], rtol=1e-5, atol=1e-7, msg=name)
        for name in ('running_mean', 'running_var', 'num_batches_tracked'):
            assert torch.equal(getattr(plain.basis_norm, name), getattr(ours.basis_norm, name)), (name, step)
        plain.zero_grad()
        ours.zero_grad()


def test_eval_mode_and_other_norms_use_the_ordinary_path():
    conv = FactorizedConv2d(8, 16, 2, None, norm_cfg=dict(type='GN', num_groups=2))
    conv.recompute_norm = True
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(conv(x), conv.coeff(conv.basis_norm(conv.basis(x))))
    bn = FactorizedConv2d(8, 16, 2, None).eval()
    bn.recompute_norm = True
    assert torch.equal(bn(x), bn.coeff(bn.basis_norm(bn.basis(x))))


def test_backbone_stores_less_and_trains_alike():
    torch.manual_seed(0)
    # norm_eval=False: BatchNorms in training mode (mmdet's default norm_eval=True keeps them in eval mode, where
    # nothing is recomputed), as in the from-scratch configs
    plain = SharedBasisResNet(arch='ResNet34-S48U1*', norm_eval=False).train()
    ours = SharedBasisResNet(arch='ResNet34-S48U1*', norm_eval=False, recompute_basis_norm=True).train()
    ours.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outs_a, bytes_a = saved_bytes(lambda: plain(x))
    outs_b, bytes_b = saved_bytes(lambda: ours(x))
    for a, b in zip(outs_a, outs_b):
        assert torch.equal(a, b)
    # one R-channel float32 map less per factorised convolution, at its output resolution
    sizes = []

    def record(mod, inputs, out):
        sizes.append(out.numel() * out.element_size())
        ranks.append(out.shape[1])

    ranks = []

    handles = [m.basis.register_forward_hook(record) for m in plain.modules() if isinstance(m, FactorizedConv2d)]
    with torch.no_grad():
        plain(x)
    for h in handles:
        h.remove()
    # the maps, plus one R-vector per layer that the ordinary BatchNorm stores for its backward and we do not
    expected = sum(sizes) + 4 * sum(ranks)
    assert len(sizes) == 24 and bytes_a - bytes_b == expected, (bytes_a, bytes_b, expected)
    assert sum(sizes) / bytes_a > 0.01  # a saving of the size of the maps, not of the statistics
    sum(o.square().mean() for o in outs_a).backward()
    sum(o.square().mean() for o in outs_b).backward()
    ga, gb = grads(plain), grads(ours)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-6, msg=name)


def test_recompute_basis_norm_must_be_a_bool():
    with pytest.raises(TypeError, match='recompute_basis_norm'):
        SharedBasisResNet(arch='ResNet34-S48U1*', recompute_basis_norm='yes')


def test_mixed_precision_training_gives_the_same_gradients():
    """Under autocast (bfloat16 on CPU, as AMP runs the basis convolution in half precision) the recomputed path
    takes the half-precision basis responses and gives the gradients of the ordinary modules."""
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for recompute in (False, True):
        torch.manual_seed(0)
        model = SharedBasisResNet(arch='ResNet34-S16U1*', norm_eval=False, recompute_basis_norm=recompute).train()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            outs = model(x)
        assert all(o.dtype == torch.bfloat16 for o in outs)
        sum(o.float().mean() for o in outs).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 100
    for name, g in grads[0].items():
        assert grads[1][name].dtype == g.dtype, name
        torch.testing.assert_close(grads[1][name], g, rtol=1e-2, atol=1e-3, msg=name)
