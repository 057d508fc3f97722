"""Hooks registered in mmdet's HOOKS: the regulariser, the statistics of the bases, the non-finite-loss guard,
safe checkpoints, deploy."""

from .basis_stats_hook import BasisStatsHook, read_basis_stats
from .checkpoint_hook import SafeCheckpointHook
from .deploy_hook import SwitchToDeployHook
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .orthogonality_hook import OrthogonalityRegularizerHook

__all__ = [
    'BasisStatsHook',
    'read_basis_stats',
    'FiniteLossHook',
    'NonFiniteLossError',
    'OrthogonalityRegularizerHook',
    'SafeCheckpointHook',
    'SwitchToDeployHook',
]
