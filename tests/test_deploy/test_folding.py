"""Folding for deployment (mmbasis.deploy.folding): BatchNorm into convolutions, factorised convolutions into their
two exact forms (the whole backbones: test_models/test_backbones/, deploy checkpoints: test_conversion.py)."""

import pytest
import torch
import torch.nn as nn

from mmbasis.deploy.folding import bn_scale_shift, deploy_form, fuse_conv_norm
from mmbasis.models.layers import FactorizedConv2d, SharedBasisStage
from tests.helpers import randomize_bn


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


def test_fuse_conv_norm_and_gn_refused():
    conv = nn.Conv2d(3, 6, 3, padding=1, groups=3)
    bn = nn.BatchNorm2d(6)
    randomize_bn(bn)
    bn.eval()
    x = torch.randn(1, 3, 5, 5)
    assert torch.allclose(fuse_conv_norm(conv, bn)(x), bn(conv(x)), atol=1e-5)
    with pytest.raises(TypeError, match='GroupNorm'):
        bn_scale_shift(nn.GroupNorm(2, 6), 6, conv.weight)
