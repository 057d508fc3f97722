"""Hooks registered in mmdet's HOOKS registry."""
from .orthogonality_hook import OrthogonalityRegularizerHook

__all__ = ['OrthogonalityRegularizerHook']
