"""Deprecated: moved to :mod:`mmbasis.compat.checkpoint_allowlist`."""

from .deprecation import forward_module

__getattr__ = forward_module(__name__, 'mmbasis.compat.checkpoint_allowlist')
