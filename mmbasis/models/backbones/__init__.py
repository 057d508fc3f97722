"""Backbones registered in mmdet's MODELS registry."""

from ..archs import MOBILENET, RESNET
from . import shared_mobilenet_v2, shared_resnet
from .shared_mobilenet_v2 import SharedBasisMobileNetV2
from .shared_resnet import SharedBasisResNet

#: ``{backbone type: {sharing argument: default}}``: what an ``arch`` sets (:func:`mmbasis.models.archs.arch_of`)
SHARING_DEFAULTS = {RESNET: shared_resnet.SHARING_DEFAULTS, MOBILENET: shared_mobilenet_v2.SHARING_DEFAULTS}

__all__ = ['SharedBasisResNet', 'SharedBasisMobileNetV2', 'SHARING_DEFAULTS']
