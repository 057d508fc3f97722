"""Backbones registered in mmdet's MODELS registry."""

from .shared_mobilenet_v2 import SharedBasisMobileNetV2
from .shared_resnet import SharedBasisResNet

__all__ = ['SharedBasisResNet', 'SharedBasisMobileNetV2']
