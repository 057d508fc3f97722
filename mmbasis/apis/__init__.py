"""Deprecated: the decomposition moved to :mod:`mmbasis.decompose`, the deploy forms to :mod:`mmbasis.deploy`."""

from ..utils.deprecation import forward_module

__getattr__ = forward_module(
    __name__, dict.fromkeys(('calibrate_deploy_forms', 'format_choices'), 'mmbasis.deploy'), default='mmbasis.decompose'
)
