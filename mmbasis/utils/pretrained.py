"""Deprecated: moved to :mod:`mmbasis.models.layers.state_check`."""

from .deprecation import forward_module

__getattr__ = forward_module(__name__, 'mmbasis.models.layers.state_check')
