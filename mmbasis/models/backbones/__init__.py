"""Backbones registered in mmdet's MODELS registry."""
from .shared_resnet import SharedBasisResNet

__all__ = ['SharedBasisResNet']
