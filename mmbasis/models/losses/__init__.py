"""Losses: the orthogonality regulariser on shared bases."""

from .orthogonality import POOLINGS, orthogonality_loss, singular_value_spread

__all__ = ['POOLINGS', 'orthogonality_loss', 'singular_value_spread']
