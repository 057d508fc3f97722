"""Hooks registered in mmdet's HOOKS: the regulariser, the non-finite-loss guard, safe checkpoints, deploy."""

from .checkpoint_hook import SafeCheckpointHook
from .deploy_hook import SwitchToDeployHook
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .orthogonality_hook import OrthogonalityRegularizerHook

__all__ = [
    'FiniteLossHook',
    'NonFiniteLossError',
    'OrthogonalityRegularizerHook',
    'SafeCheckpointHook',
    'SwitchToDeployHook',
]
