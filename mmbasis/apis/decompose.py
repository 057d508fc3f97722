"""Deprecated: moved to :mod:`mmbasis.decompose`."""

from ..utils.deprecation import forward_module

__getattr__ = forward_module(__name__, 'mmbasis.decompose')
