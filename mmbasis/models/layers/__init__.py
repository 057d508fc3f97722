"""Layers: filter bases, factorised convolutions, the stage that owns shared bases, BN folding."""

from .basis_conv import DEPLOY_FORMS, BasisConv2d, FactorizedConv2d, deploy_form
from .fusion import bn_scale_shift, fuse_conv_norm
from .shared_stage import BasisGroup, SharedBasisBackboneMixin, SharedBasisStage

__all__ = [
    'BasisConv2d',
    'FactorizedConv2d',
    'DEPLOY_FORMS',
    'deploy_form',
    'bn_scale_shift',
    'fuse_conv_norm',
    'BasisGroup',
    'SharedBasisBackboneMixin',
    'SharedBasisStage',
]
