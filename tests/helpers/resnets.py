"""Tiny plain ResNets and the checkpoint layouts they come in (for the decomposition and its command)."""

from collections import OrderedDict
from typing import Dict

import torch
from mmdet.models.backbones import ResNet
from torch import Tensor

from . import randomize_bn

#: a tiny shared-basis target of the decomposition
R18 = dict(type='SharedBasisResNet', depth=18, shared_rank=2, unique_rank=1, base_channels=8)


def plain_resnet(depth: int = 18, seed: int = 0, **kwargs) -> ResNet:
    """A plain mmdet ResNet (base_channels=8) with random convs (PyTorch default init) and random BN statistics."""
    torch.manual_seed(seed)
    model = ResNet(depth, base_channels=8, **kwargs)
    randomize_bn(model, seed)
    model.eval()  # mmdet's ResNet.train returns None
    return model


def layouts(sd: Dict[str, Tensor]) -> Dict[str, Dict[str, Tensor]]:
    head = {'fc.weight': torch.zeros(10, 64), 'fc.bias': torch.zeros(10)}
    prefixed = OrderedDict((f'backbone.{k}', v) for k, v in sd.items())
    return {
        'torchvision': OrderedDict(**sd, **head),
        'mm-backbone': OrderedDict(sd),
        'mm-classifier': OrderedDict(**prefixed, **{f'head.{k}': v for k, v in head.items()}),
        'mmdet-detector': OrderedDict(
            **prefixed,
            **{
                'neck.lateral_convs.0.conv.weight': torch.zeros(4, 8, 1, 1),
                'rpn_head.rpn_conv.weight': torch.zeros(4, 4, 3, 3),
            },
        ),
    }
