"""The paper's ImageNet models as mmdet backbone configs, by their paper names.

Counts are the official code's backbone-only parameter counts (no classifier; stem, every BN and, for
MobileNetV2, the 1280-channel conv included), measured from ssregibility/Net_RL2 (paper digest, Sec. 7).
"""
import copy
from typing import Dict

_R34 = dict(type='SharedBasisResNet', depth=34, rank_multipliers=(1, 2, 4, 8))
_MBV2 = dict(type='SharedBasisMobileNetV2', variant='official', shared_stages=(2, 3, 4, 5))

_PAPER_BACKBONES: Dict[str, dict] = {
    'ResNet34-S48U1*': dict(_R34, shared_rank=48, unique_rank=1, basis_sharing='conv'),
    'ResNet34-S32U1*': dict(_R34, shared_rank=32, unique_rank=1, basis_sharing='conv'),
    'ResNet34-S16U1*': dict(_R34, shared_rank=16, unique_rank=1, basis_sharing='conv'),
    'ResNet34-S48U1': dict(_R34, shared_rank=48, unique_rank=1, basis_sharing='stage'),
    'ResNet34-S32U1': dict(_R34, shared_rank=32, unique_rank=1, basis_sharing='stage'),
    'ResNet34-S16U1': dict(_R34, shared_rank=16, unique_rank=1, basis_sharing='stage'),
    'ResNet50-Shared': dict(type='SharedBasisResNet', depth=50, shared_convs=('conv2', ), basis_sharing='stage'),
    'ResNet50-Shared++': dict(type='SharedBasisResNet', depth=50, shared_convs=('conv2', 'conv3'), basis_sharing='conv'),
    'ResNet101-Shared': dict(type='SharedBasisResNet', depth=101, shared_convs=('conv2', ), basis_sharing='stage'),
    'MobileNetV2-Shared': dict(_MBV2, shared_convs=('expand_conv', )),
    'MobileNetV2-Shared++': dict(_MBV2, shared_convs=('expand_conv', 'linear_conv')),
    # The official Shared++ code at HEAD adds ECA attention (17 parameters); the published result very
    # likely predates it (paper digest 1.4). Use this entry for checkpoints that carry ECA weights.
    'MobileNetV2-Shared++-ECA': dict(_MBV2, shared_convs=('expand_conv', 'linear_conv'), with_eca=True),
}

#: Official backbone-only parameter counts (paper digest, Sec. 7.1).
PAPER_BACKBONE_PARAMS: Dict[str, int] = {
    'ResNet34-S48U1*': 11_273_968,
    'ResNet34-S32U1*': 9_249_776,
    'ResNet34-S16U1*': 7_225_584,
    'ResNet34-S48U1': 8_923_888,
    'ResNet34-S32U1': 7_683_056,
    'ResNet34-S16U1': 6_442_224,
    'ResNet50-Shared': 18_457_664,
    'ResNet50-Shared++': 16_213_056,
    'ResNet101-Shared': 27_422_784,
    'MobileNetV2-Shared': 1_962_080,
    'MobileNetV2-Shared++': 1_697_888,
    'MobileNetV2-Shared++-ECA': 1_697_905,
}

PAPER_MODEL_NAMES = tuple(_PAPER_BACKBONES)


def paper_backbone_cfg(name: str) -> dict:
    """Backbone config dict of the paper model ``name`` (a new copy each call).

    Example:
        >>> cfg = paper_backbone_cfg('ResNet34-S48U1*')
        >>> cfg['type'], cfg['shared_rank'], cfg['basis_sharing']
        ('SharedBasisResNet', 48, 'conv')
    """
    if name not in _PAPER_BACKBONES:
        raise KeyError(f'unknown paper model {name!r}; known names: {", ".join(PAPER_MODEL_NAMES)}')
    return copy.deepcopy(_PAPER_BACKBONES[name])
