"""The paper's models keyed by arch name (mmbasis.models.archs): every arch builds the official model (the parameter
counts of the official code), in the ``arch=`` idiom or from explicit arguments."""

import pytest
import torch
from mmdet.registry import MODELS

import mmbasis  # noqa: F401
from mmbasis.models.archs import (
    PAPER_MODEL_NAMES,
    PAPER_MODELS,
    arch_of,
    expand_arch,
    paper_backbone_cfg,
    paper_model,
    plain_counterpart,
)
from mmbasis.models.backbones import SHARING_DEFAULTS
from mmbasis.models.layers import BasisConv2d
from tests.helpers import num_params

# The names the issue and the paper use; every one must be in the table.
PAPER_NAMES = [
    'ResNet34-S48U1*',
    'ResNet34-S32U1*',
    'ResNet34-S16U1*',
    'ResNet34-S48U1',
    'ResNet34-S32U1',
    'ResNet34-S16U1',
    'ResNet50-Shared',
    'ResNet50-Shared++',
    'ResNet101-Shared',
    'MobileNetV2-Shared',
    'MobileNetV2-Shared++',
]


def test_every_paper_name_is_known():
    assert set(PAPER_NAMES) <= set(PAPER_MODEL_NAMES)


@pytest.mark.parametrize('name', PAPER_MODEL_NAMES)
def test_paper_model_matches_the_official_counts(name):
    row = paper_model(name)
    model = MODELS.build(dict(type=row.type, arch=name))
    assert num_params(model) == row.params
    bases = model.shared_bases()
    assert sum(p.numel() for p in bases.values()) == row.shared_params
    per_family = {}
    for g in model.basis_groups():
        per_family[g.family] = per_family.get(g.family, 0) + len(g.shared)
    assert per_family == row.bases_per_family
    # the depth of the recursion: how many convolutions use one basis of layer3
    first = next(p for n, p in bases.items() if n.startswith('layer3.'))
    uses = [m for m in model.layer3.modules() if isinstance(m, BasisConv2d) and m.shared_basis is first]
    assert len(uses) == row.stage3_uses
    plain = MODELS.build(row.plain)
    assert num_params(plain) > row.params  # sharing saves parameters over the plain counterpart


def test_resnet_stage_outputs():
    model = MODELS.build(paper_backbone_cfg('ResNet34-S48U1*')).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512] and [o.shape[-1] for o in outs] == [16, 8, 4, 2]


def test_returns_fresh_copies():
    a = paper_backbone_cfg('ResNet34-S48U1*')
    a['shared_rank'] = 1
    assert paper_backbone_cfg('ResNet34-S48U1*')['shared_rank'] == 48
    assert PAPER_MODELS['ResNet34-S48U1*'].backbone['shared_rank'] == 48


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match='ResNet34-S48U1\\*.*MobileNetV2-Shared'):
        paper_backbone_cfg('ResNet34-S64U1')


@pytest.mark.parametrize('name', ['ResNet34-S48U1*', 'ResNet50-Shared++', 'MobileNetV2-Shared++-ECA'])
def test_the_arch_builds_what_the_explicit_arguments_build(name):
    torch.manual_seed(0)
    short = MODELS.build(dict(type=paper_model(name).type, arch=name))
    torch.manual_seed(0)
    explicit = MODELS.build(paper_backbone_cfg(name))
    assert short.arch == name and explicit.arch is None
    a, b = short.state_dict(), explicit.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # same structure, same initial weights


def test_explicit_arguments_override_the_arch_as_a_config_key_does():
    # a config that merges the arch into a plain ResNet-34's backbone dict repeats depth=34: still the paper model
    same = MODELS.build(dict(type='SharedBasisResNet', arch='ResNet34-S48U1*', depth=34, rank_multipliers=[1, 2, 4, 8]))
    assert same.shared_rank == 48 and same.arch == 'ResNet34-S48U1*'
    # ``--cfg-options model.backbone.basis_sharing=stage`` on an S48U1* config: the paper's S48U1, arch None
    other = MODELS.build(dict(type='SharedBasisResNet', arch='ResNet34-S48U1*', basis_sharing='stage'))
    assert other.arch is None and other.basis_sharing == 'stage' and other.shared_rank == 48
    assert num_params(other) == paper_model('ResNet34-S48U1').params
    with pytest.raises(ValueError, match=r"arch='MobileNetV2-Shared' is not allowed for SharedBasisResNet: choose one"):
        MODELS.build(dict(type='SharedBasisResNet', arch='MobileNetV2-Shared'))
    with pytest.raises(ValueError, match=r"arch='ResNet34-S64U1\*' is not allowed for SharedBasisMobileNetV2"):
        MODELS.build(dict(type='SharedBasisMobileNetV2', arch='ResNet34-S64U1*'))
    with pytest.raises(ValueError, match='needs depth'):
        MODELS.build(dict(type='SharedBasisResNet'))


def test_the_layout_of_a_mobilenet_is_not_part_of_its_arch():
    mmdet_layout = MODELS.build(dict(type='SharedBasisMobileNetV2', arch='MobileNetV2-Shared++', variant='mmdet'))
    assert mmdet_layout.variant == 'mmdet' and mmdet_layout.shared_convs == ('expand_conv', 'linear_conv')
    assert num_params(mmdet_layout) != paper_model('MobileNetV2-Shared++').params  # the official layout's count


def test_expand_arch_plain_counterpart_and_arch_of():
    short = dict(type='SharedBasisResNet', arch='ResNet50-Shared', frozen_stages=1)
    assert expand_arch(short) == dict(type='SharedBasisResNet', frozen_stages=1, depth=50, shared_convs=('conv2',))
    assert plain_counterpart(short) == dict(type='ResNet', frozen_stages=1, depth=50)
    other = dict(type='mmpretrain.RepVGG', arch='A0')  # another library's arch is left alone
    assert expand_arch(other) == other and plain_counterpart(other) == other
    assert arch_of(short, SHARING_DEFAULTS) == 'ResNet50-Shared'
    assert arch_of(dict(short, arch='ResNet34-S48U1*', basis_sharing='stage'), SHARING_DEFAULTS) == 'ResNet34-S48U1'
    assert arch_of(paper_backbone_cfg('ResNet34-S16U1'), SHARING_DEFAULTS) == 'ResNet34-S16U1'
    aligned = dict(type='SharedBasisResNet', depth=34, shared_rank=47, unique_rank=1, basis_sharing='conv')
    assert arch_of(aligned, SHARING_DEFAULTS) is None  # ours, not the paper's
    assert arch_of(dict(type='ResNet', depth=34), SHARING_DEFAULTS) is None
