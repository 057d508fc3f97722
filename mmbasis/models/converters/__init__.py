"""Checkpoint converters: official Net_RL2 weights -> mmbasis backbones, training -> deploy checkpoints.

Checkpoints are read with ``weights_only=True`` and written atomically.
"""
from .checkpoint_io import CheckpointFormatError, load_weights_only, same_file, save_atomic
from .deploy import DeployReport, build_detector, convert_checkpoint_to_deploy, deploy_usage
from .netrl2 import (NETRL2_ARCHS, NetRL2ConversionError, convert_netrl2_state_dict, expected_shapes,
                     extract_netrl2_state_dict, guess_netrl2_arch, load_netrl2_checkpoint, netrl2_checkpoint_meta,
                     strip_module_prefix)

__all__ = [
    'DeployReport', 'build_detector', 'convert_checkpoint_to_deploy', 'deploy_usage',
    'CheckpointFormatError', 'load_weights_only', 'same_file', 'save_atomic', 'NETRL2_ARCHS',
    'NetRL2ConversionError', 'convert_netrl2_state_dict', 'expected_shapes', 'extract_netrl2_state_dict',
    'guess_netrl2_arch', 'load_netrl2_checkpoint', 'netrl2_checkpoint_meta', 'strip_module_prefix'
]
