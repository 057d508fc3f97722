"""Deprecated: moved to :mod:`mmbasis.deploy.calibration`."""

from ..utils.deprecation import forward_module

__getattr__ = forward_module(__name__, 'mmbasis.deploy.calibration')
