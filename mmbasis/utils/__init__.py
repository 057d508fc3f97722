"""Utilities: checkpoint I/O, the state-dict mismatch report, config lookup, argument checks, deprecations."""

from .checkpoint_io import (
    CheckpointFormatError,
    load_weights_only,
    same_file,
    save_atomic,
    split_checkpoint,
    strip_module_prefix,
)
from .config_path import get_config_path
from .deprecation import forward_module
from .state_dict import KeyMismatch, compare_keys

# moved to mmbasis.compat (the torch >= 2.6 checkpoint allowlist)
__getattr__ = forward_module(
    __name__,
    dict.fromkeys(
        ('checkpoint_safe_globals', 'globals_needing_allowlist', 'install_checkpoint_allowlist'), 'mmbasis.compat'
    ),
)

__all__ = [
    'CheckpointFormatError',
    'load_weights_only',
    'same_file',
    'save_atomic',
    'split_checkpoint',
    'strip_module_prefix',
    'get_config_path',
    'KeyMismatch',
    'compare_keys',
]
