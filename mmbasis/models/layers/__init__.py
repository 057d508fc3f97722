"""Layers: filter bases, factorised convolutions, the stage that owns shared bases."""

from ...utils.deprecation import forward_module
from .basis_conv import BasisConv2d, FactorizedConv2d
from .shared_stage import BasisGroup, SharedBasisBackboneMixin, SharedBasisStage

# moved to mmbasis.deploy.folding (everything that folds a model for deployment lives there)
__getattr__ = forward_module(__name__, 'mmbasis.deploy.folding')

__all__ = [
    'BasisConv2d',
    'FactorizedConv2d',
    'BasisGroup',
    'SharedBasisBackboneMixin',
    'SharedBasisStage',
]
