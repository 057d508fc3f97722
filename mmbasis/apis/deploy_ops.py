"""Deprecated: moved to :mod:`mmbasis.deploy.ops`."""

from ..utils.deprecation import forward_module

__getattr__ = forward_module(__name__, 'mmbasis.deploy.ops')
