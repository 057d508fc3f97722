"""Utilities: checkpoint loading on torch >= 2.6, locating mmbasis' own configs."""
from .checkpoint_compat import checkpoint_safe_globals, globals_needing_allowlist, install_checkpoint_allowlist
from .config_path import get_config_path

__all__ = ['checkpoint_safe_globals', 'globals_needing_allowlist', 'install_checkpoint_allowlist', 'get_config_path']
