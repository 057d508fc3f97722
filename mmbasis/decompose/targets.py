"""The target of a decomposition: its config and the two networks built from it (the shared-basis target and
the plain ResNet of the same geometry, which the source checkpoint must fit).
"""

import copy
import re
from collections import OrderedDict
from typing import List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.archs import PAPER_MODELS, RESNET, paper_backbone_cfg, plain_counterpart
from ..models.backbones import SharedBasisResNet
from ..utils.checkpoint_io import CheckpointFormatError
from ..utils.misc import brief
from ..utils.state_dict import compare_keys


def target_backbone_cfg(arch: Optional[str] = None, backbone_cfg: Optional[Mapping] = None) -> dict:
    """The config of the target :class:`SharedBasisResNet`, from a paper name or a config dict (exactly one).

    ``init_cfg``/``pretrained`` are removed (the decomposed checkpoint becomes the pretrained weights).

    Raises:
        ValueError: both or neither given, an unknown or non-ResNet paper name, a config that is not a dict with
            ``type='SharedBasisResNet'`` or has ``deploy=True``.
    """
    if (arch is None) == (backbone_cfg is None):
        raise ValueError('give exactly one of arch (a paper name) and backbone_cfg (a SharedBasisResNet config)')
    if arch is not None:
        resnets = [n for n, m in PAPER_MODELS.items() if m.type == RESNET]
        if arch not in resnets:
            raise ValueError(
                f'arch={arch!r} is not allowed: choose a paper ResNet model, one of {", ".join(resnets)} '
                '(or give a SharedBasisResNet config)'
            )
        return paper_backbone_cfg(arch)
    if not isinstance(backbone_cfg, Mapping) or 'type' not in backbone_cfg:
        raise ValueError(f"backbone_cfg={backbone_cfg!r} is not allowed: give a dict with type='SharedBasisResNet'")
    cfg = _plain_types(backbone_cfg)
    btype = str(cfg['type'])  # a class was turned into its name
    if btype.rsplit('.', maxsplit=1)[-1] != 'SharedBasisResNet':
        raise ValueError(
            f'the target backbone type {btype!r} is not allowed: only SharedBasisResNet backbones can '
            "be the target (e.g. dict(type='SharedBasisResNet', depth=18, shared_rank=16, unique_rank=1))"
        )
    if cfg.get('deploy'):
        raise ValueError(
            'deploy=True is not allowed for the target: decompose into the training form, then use '
            'tools/model_converters/switch_to_deploy.py'
        )
    for key in ('init_cfg', 'pretrained'):
        cfg.pop(key, None)
    cfg['type'] = 'SharedBasisResNet'
    return cfg


def _plain_types(obj):
    """A copy of a config made of dict/list/tuple/str/int/float/bool/None (loads with ``weights_only``)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain_types(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain_types(v) for v in obj) if type(obj) in (list, tuple) else list(map(_plain_types, obj))
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return getattr(obj, '__name__', str(obj))


def build_target(cfg: dict) -> SharedBasisResNet:
    from mmdet.registry import MODELS

    try:
        model = MODELS.build(copy.deepcopy(cfg))
    except Exception as e:  # the registry wraps constructor errors; the message is what matters
        raise ValueError(f'cannot build the target backbone {cfg!r}: {e}') from None
    if not isinstance(model, SharedBasisResNet):
        raise ValueError(f'the target backbone is a {type(model).__name__}, not a SharedBasisResNet')
    bad = [
        n
        for n, m in model.named_modules()
        if 'norm' in type(m).__name__.lower()
        and (not isinstance(m, _BatchNorm) or not m.affine or m.running_var is None)
    ]
    if bad:
        raise ValueError(
            f'the target needs affine BatchNorm layers with running statistics (norm_cfg BN/SyncBN); '
            f'these are not: {brief(bad)}'
        )
    return model


def build_plain(cfg: dict) -> nn.Module:
    """mmdet's plain ResNet with the target's geometry (the function of the source checkpoint)."""
    from mmdet.registry import MODELS

    plain = plain_counterpart(cfg)
    plain.pop('init_cfg', None)
    plain.pop('pretrained', None)
    return MODELS.build(plain)


def _resnet_arch(sd: Mapping[str, Tensor]) -> Tuple[str, Tuple[int, ...]]:
    """``(block type, blocks per stage)`` of a plain ResNet state dict."""
    counts = []
    while True:
        idx = {int(m[1]) for k in sd for m in [re.match(rf'layer{len(counts) + 1}\.(\d+)\.', k)] if m}
        if not idx:
            break
        counts.append(max(idx) + 1)
    return ('Bottleneck' if 'layer1.0.conv3.weight' in sd else 'BasicBlock'), tuple(counts)


def _arch_name(block: str, counts: Sequence[int]) -> str:
    from mmdet.models.backbones import ResNet

    depth = [d for d, (b, c) in ResNet.arch_settings.items() if b.__name__ == block and tuple(c) == tuple(counts)]
    return (
        f'ResNet-{depth[0]} ({block}, blocks per stage {tuple(counts)})'
        if depth
        else f'a ResNet with {block}s, blocks per stage {tuple(counts)}'
    )


def match_plain(sd: Mapping[str, Tensor], plain: nn.Module) -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """Check ``sd`` against the plain reference backbone; return its complete state dict and the dropped keys.

    Keys of stages the target does not have (``num_stages`` < 4) are dropped; a missing ``num_batches_tracked``
    (old torchvision files) starts at 0.
    """
    block, counts = _resnet_arch(sd)
    want = (plain.block.__name__, tuple(plain.stage_blocks))
    if (block, counts[: len(want[1])]) != want:
        raise CheckpointFormatError(
            f'the plain checkpoint is {_arch_name(block, counts)}, but the target needs '
            f'{_arch_name(*want)}: choose a target of the depth of the checkpoint (or a '
            'checkpoint of the depth of the target)'
        )
    expected = plain.state_dict()
    dropped = [
        k
        for k in sd
        if k not in expected and re.match(r'layer(\d+)\.', k) and int(re.match(r'layer(\d+)\.', k)[1]) > len(want[1])
    ]
    fit = compare_keys(expected, {k: v for k, v in sd.items() if k not in dropped})
    problems = fit.problems(expected='target')
    if problems:
        hint = (
            ' It is already a shared-basis checkpoint.'
            if any('basis' in k for k in fit.unexpected)
            else ' Check base_channels/stem_channels/deep_stem/avg_down of the target against the checkpoint.'
        )
        raise CheckpointFormatError(
            'the backbone weights are not a plain ResNet matching the target: ' + '; '.join(problems) + '.' + hint
        )
    out = OrderedDict()
    for k, v in expected.items():
        out[k] = sd[k] if k in sd else torch.zeros_like(v)
    return out, dropped
