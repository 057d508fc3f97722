"""Deprecated: moved to :mod:`mmbasis.models.archs` (the paper's models, keyed by arch name)."""

from .utils.deprecation import forward_module

__getattr__ = forward_module(__name__, 'mmbasis.models.archs')
