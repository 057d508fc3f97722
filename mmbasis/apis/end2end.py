"""Deprecated: moved to :mod:`mmbasis.deploy.end2end`."""

from ..utils.deprecation import forward_module

__getattr__ = forward_module(__name__, 'mmbasis.deploy.end2end')
