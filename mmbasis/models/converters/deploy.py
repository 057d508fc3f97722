"""Turn a trained detector checkpoint into its deploy form (backbone norms folded, shared bases merged).

A backbone with ``switch_to_deploy()`` (``SharedBasisResNet``, ``SharedBasisMobileNetV2``) folds every
BatchNorm into the convolution before it and turns basis/factorised convolutions into plain ``nn.Conv2d``
(paper Sec. 3: the shared basis and the coefficients are linear, so the trained layer is an ordinary conv).
The result loads strictly into the same config built with ``model.backbone.deploy=True``.
"""
import copy
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Mapping, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from torch import Tensor

from .checkpoint_io import CheckpointFormatError, load_weights_only, save_atomic
from .netrl2 import strip_module_prefix

#: Checkpoint entries that only make sense for the training structure; not copied into a deploy checkpoint.
TRAINING_ONLY_KEYS = ('optimizer', 'param_schedulers', 'message_hub', 'ema_state_dict')


@dataclass
class DeployReport:
    """What :func:`convert_checkpoint_to_deploy` did.

    Attributes:
        num_tensors_before / num_tensors_after (int): state dict sizes of the training / deploy model.
        max_abs_diff (float): max |backbone output difference| between the eval-mode training model and the
            deploy model on a random input (``check_shape``).
        max_abs_ref (float): max |backbone output| of the training model on that input (for scale).
        dropped_keys (tuple[str]): top-level checkpoint entries not carried over.
    """
    num_tensors_before: int
    num_tensors_after: int
    max_abs_diff: float
    max_abs_ref: float
    dropped_keys: Tuple[str, ...]


def build_detector(cfg: Config, deploy: bool) -> nn.Module:
    """``MODELS.build(cfg.model)`` on CPU in the config's default scope, with ``backbone.deploy`` set."""
    from mmdet.registry import MODELS
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope

    cfg = copy.deepcopy(cfg)
    if deploy:
        cfg.model.backbone.deploy = True
    scope = cfg.get('default_scope', 'mmdet')
    if scope is not None:
        init_default_scope(scope)
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def _state_dict_of(checkpoint, path: str) -> Tuple['OrderedDict[str, Tensor]', dict]:
    if isinstance(checkpoint, Mapping) and 'state_dict' in checkpoint:
        sd, meta = checkpoint['state_dict'], checkpoint.get('meta') or {}
    elif isinstance(checkpoint, Mapping) and checkpoint and all(isinstance(v, Tensor) for v in checkpoint.values()):
        sd, meta = checkpoint, {}
    else:
        found = f'keys {list(checkpoint)[:6]}' if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointFormatError(f'{path!r} is not an mmengine/mmdet checkpoint: expected a dict with '
                                    f"'state_dict' or a plain state dict, found {found}")
    if not isinstance(meta, Mapping):
        raise CheckpointFormatError(f"{path!r}: 'meta' must be a dict, got {type(meta).__name__}")
    if meta.get('deploy'):
        raise CheckpointFormatError(f'{path!r} is already a deploy checkpoint (meta["deploy"] is True)')
    return strip_module_prefix(sd), dict(meta)


def _listed(items) -> str:
    items = list(items)
    return ', '.join(items[:6]) + (f', ... ({len(items)} in total)' if len(items) > 6 else '')


def _load_strict(model: nn.Module, state_dict: Mapping[str, Tensor], what: str) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with one clear message for every kind of mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f'{k} {tuple(v.shape)} vs {tuple(own[k].shape)}' for k, v in state_dict.items()
              if k in own and v.shape != own[k].shape]
    problems = [f'{name}: {_listed(keys)}' for name, keys in
                (('missing keys', missing), ('unexpected keys', unexpected),
                 ('shape mismatches (checkpoint vs model)', shapes)) if keys]
    if problems:
        raise CheckpointFormatError(f'{what} does not fit the model of the config ({"; ".join(problems)})')
    model.load_state_dict(state_dict, strict=True)


def _backbone_outputs(backbone: nn.Module, x: Tensor) -> Tuple[Tensor, ...]:
    with torch.no_grad():
        out = backbone(x)
    return tuple(out) if isinstance(out, (tuple, list)) else (out, )


def convert_checkpoint_to_deploy(cfg: Config, checkpoint: str, out: str, check_shape: Tuple[int, int] = (64, 64),
                                 seed: int = 0) -> DeployReport:
    """Load ``checkpoint`` into ``cfg.model``, call ``model.backbone.switch_to_deploy()`` and save to ``out``.

    Steps: build the training structure (``backbone.deploy`` must not be set in ``cfg``); load the
    checkpoint strictly (``weights_only=True``); in eval mode, record the backbone outputs on a random
    ``(1, C, *check_shape)`` input; switch; check the outputs agree (relative error <= 1e-4); check that the
    new state dict loads strictly into ``cfg`` built with ``model.backbone.deploy=True``; save
    ``dict(meta=meta + deploy=True, state_dict=new)`` atomically (training-only entries such as the
    optimizer state are dropped).

    Raises:
        TypeError: the backbone has no ``switch_to_deploy``.
        ValueError: ``cfg`` already builds the deploy structure, or ``out`` is ``checkpoint``.
        FileNotFoundError, CheckpointFormatError: unreadable checkpoint or keys that do not fit ``cfg``.
        RuntimeError: the deploy model's outputs differ from the training model's.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f'cfg must be an mmengine Config, got {type(cfg).__name__}')
    if len(check_shape) != 2 or any(not isinstance(s, int) or s < 32 for s in check_shape):
        raise ValueError(f'check_shape={tuple(check_shape)!r} is not allowed: give (H, W) integers >= 32')
    if 'model' not in cfg or 'backbone' not in cfg.model:
        raise ValueError('the config has no model.backbone')
    if cfg.model.backbone.get('deploy', False):
        raise ValueError('the config already builds the deploy structure (model.backbone.deploy=True): give the '
                         'training config; the deploy flag is for using the converted checkpoint')
    raw = load_weights_only(checkpoint)
    state_dict, meta = _state_dict_of(raw, checkpoint)

    model = build_detector(cfg, deploy=False)
    backbone = model.backbone
    if not callable(getattr(backbone, 'switch_to_deploy', None)):
        raise TypeError(f'the backbone {type(backbone).__name__} has no switch_to_deploy(); deploy conversion '
                        'needs an mmbasis backbone (SharedBasisResNet, SharedBasisMobileNetV2)')
    _load_strict(model, state_dict, f'checkpoint {checkpoint!r}')
    model.eval()

    in_channels = cfg.model.backbone.get('in_channels', 3)
    x = torch.randn(1, in_channels, *check_shape, generator=torch.Generator().manual_seed(seed))
    ref = _backbone_outputs(backbone, x)
    n_before = len(model.state_dict())
    backbone.switch_to_deploy()
    got = _backbone_outputs(backbone, x)
    diff = max((a - b).abs().max().item() for a, b in zip(ref, got))
    scale = max(a.abs().max().item() for a in ref)
    if len(ref) != len(got) or diff > 1e-4 * max(scale, 1.0):
        raise RuntimeError(f'deploy backbone outputs differ from the training backbone: max |diff| {diff:.3g} at '
                           f'output scale {scale:.3g}')
    new_state = OrderedDict((k, v.detach().cpu().contiguous()) for k, v in model.state_dict().items())

    deploy_model = build_detector(cfg, deploy=True)
    _load_strict(deploy_model, new_state, 'the deploy state dict')

    dropped = tuple(k for k in raw if k not in ('meta', 'state_dict')) if isinstance(raw, Mapping) and \
        'state_dict' in raw else ()
    meta.update(deploy=True, deploy_source=osp.basename(str(checkpoint)))
    save_atomic(dict(meta=meta, state_dict=new_state), out, protect=checkpoint)
    return DeployReport(n_before, len(new_state), diff, scale, dropped)


def deploy_usage(config: str, out: str) -> Dict[str, str]:
    """Commands that use a deploy checkpoint (test tool and config override)."""
    return dict(test=f'python tools/test.py {config} {out} --cfg-options model.backbone.deploy=True',
                config="model = dict(backbone=dict(deploy=True))  # in a config inheriting the training one")
