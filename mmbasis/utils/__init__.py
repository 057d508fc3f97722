"""Utilities: checkpoint loading on torch >= 2.6 and checkpoint I/O, config lookup, argument checks."""

from .checkpoint_compat import checkpoint_safe_globals, globals_needing_allowlist, install_checkpoint_allowlist
from .checkpoint_io import (
    CheckpointFormatError,
    load_weights_only,
    same_file,
    save_atomic,
    split_checkpoint,
    strip_module_prefix,
)
from .config_path import get_config_path

__all__ = [
    'checkpoint_safe_globals',
    'globals_needing_allowlist',
    'install_checkpoint_allowlist',
    'CheckpointFormatError',
    'load_weights_only',
    'same_file',
    'save_atomic',
    'split_checkpoint',
    'strip_module_prefix',
    'get_config_path',
]
