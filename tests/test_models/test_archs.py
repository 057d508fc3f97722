"""The paper's model table: every name builds the official model (parameter counts of the official code)."""

import pytest
import torch
from mmdet.registry import MODELS

import mmbasis  # noqa: F401
from mmbasis.models.layers import BasisConv2d
from mmbasis.paper_models import PAPER_MODEL_NAMES, PAPER_MODELS, paper_backbone_cfg, paper_model
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
    model = MODELS.build(paper_backbone_cfg(name))
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
