import pytest

from mmbasis.models import PAPER_BACKBONE_PARAMS, PAPER_MODEL_NAMES, paper_backbone_cfg

ISSUE_NAMES = ['ResNet34-S48U1*', 'ResNet34-S32U1*', 'ResNet34-S16U1*', 'ResNet34-S48U1', 'ResNet34-S32U1',
               'ResNet34-S16U1', 'ResNet50-Shared', 'ResNet50-Shared++', 'ResNet101-Shared', 'MobileNetV2-Shared',
               'MobileNetV2-Shared++']


def test_every_paper_name_is_known_and_counted():
    assert set(ISSUE_NAMES) <= set(PAPER_MODEL_NAMES)
    assert set(PAPER_MODEL_NAMES) == set(PAPER_BACKBONE_PARAMS)


def test_returns_fresh_copies():
    a = paper_backbone_cfg('ResNet34-S48U1*')
    a['shared_rank'] = 1
    assert paper_backbone_cfg('ResNet34-S48U1*')['shared_rank'] == 48


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match='ResNet34-S48U1\\*.*MobileNetV2-Shared'):
        paper_backbone_cfg('ResNet34-S64U1')
