"""Convert a trained detector checkpoint into the deploy form of its mmbasis backbone.

    python tools/model_converters/switch_to_deploy.py CONFIG CKPT OUT [--calibrate H W] [--cfg-options k=v ...]

Builds the detector of CONFIG on the CPU, loads CKPT strictly (``torch.load(weights_only=True)``; the
allowlist installed by ``import mmbasis`` admits full mmengine training checkpoints), calls
``model.backbone.switch_to_deploy()`` (every BatchNorm folded, shared-basis and factorised convolutions
turned into plain convolutions), checks that the backbone outputs are unchanged in eval mode and that
the result loads strictly into CONFIG with ``model.backbone.deploy=True``, and writes OUT atomically as
``dict(meta=..., state_dict=...)`` (``meta`` kept, plus ``deploy=True``; optimizer, scheduler, message
hub and EMA entries dropped: they belong to the training structure). Use OUT with::

    python tools/test.py CONFIG OUT --cfg-options model.backbone.deploy=True
"""

import argparse
import copy
import os.path as osp
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.config import Config, DictAction
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from torch import Tensor

import mmbasis  # noqa: F401  (registers modules, installs the checkpoint allowlist)
from mmbasis.utils import CheckpointFormatError, load_weights_only, same_file, save_atomic, split_checkpoint
from mmbasis.utils.cli import read_config
from mmbasis.utils.misc import brief


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
    deploy_forms: Dict[str, str] = None


def build_detector(cfg: Config, deploy: bool, deploy_forms: Optional[Dict[str, str]] = None) -> nn.Module:
    """``MODELS.build(cfg.model)`` on CPU in the config's default scope, with ``backbone.deploy`` set."""
    cfg = copy.deepcopy(cfg)
    if deploy:
        cfg.model.backbone.deploy = True
    if deploy_forms:
        cfg.model.backbone.deploy_forms = dict(deploy_forms)
    scope = cfg.get('default_scope', 'mmdet')
    if scope is not None:
        init_default_scope(scope)
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def _state_dict_of(checkpoint, path: str) -> Tuple['OrderedDict[str, Tensor]', dict]:
    sd, meta = split_checkpoint(checkpoint, path)
    if meta.get('deploy'):
        raise CheckpointFormatError(f'{path!r} is already a deploy checkpoint (meta["deploy"] is True)')
    return sd, meta


def _load_strict(model: nn.Module, state_dict: Mapping[str, Tensor], what: str) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with one clear message for every kind of mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f'{k} {tuple(v.shape)} vs {tuple(own[k].shape)}'
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape
    ]
    problems = [
        f'{name}: {brief(keys)}'
        for name, keys in (
            ('missing keys', missing),
            ('unexpected keys', unexpected),
            ('shape mismatches (checkpoint vs model)', shapes),
        )
        if keys
    ]
    if problems:
        raise CheckpointFormatError(f'{what} does not fit the model of the config ({"; ".join(problems)})')
    model.load_state_dict(state_dict, strict=True)


def _backbone_outputs(backbone: nn.Module, x: Tensor) -> Tuple[Tensor, ...]:
    with torch.no_grad():
        out = backbone(x)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def convert_checkpoint_to_deploy(
    cfg: Config,
    checkpoint: str,
    out: str,
    check_shape: Tuple[int, int] = (64, 64),
    seed: int = 0,
    calibrate: Optional[Tuple[int, int]] = None,
) -> DeployReport:
    """Load ``checkpoint`` into ``cfg.model``, call ``model.backbone.switch_to_deploy()`` and save to ``out``.

    Steps: build the training structure (``backbone.deploy`` must not be set in ``cfg``); load the
    checkpoint strictly (``weights_only=True``); in eval mode, record the backbone outputs on a random
    ``(1, C, *check_shape)`` input; switch; check the outputs agree (relative error <= 1e-4); check that the
    new state dict loads strictly into ``cfg`` built with ``model.backbone.deploy=True``; save
    ``dict(meta=meta + deploy=True, state_dict=new)`` atomically (training-only entries such as the
    optimizer state are dropped). With ``calibrate=(H, W)`` the deploy form of every factorised convolution is
    chosen by timing both on this machine at that input size (``mmbasis.apis.calibrate_deploy_forms``) and
    recorded as ``meta['deploy_forms']`` (the backbone's ``deploy_forms`` argument rebuilds that structure).

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
        raise ValueError(
            'the config already builds the deploy structure (model.backbone.deploy=True): give the '
            'training config; the deploy flag is for using the converted checkpoint'
        )
    raw = load_weights_only(checkpoint)
    state_dict, meta = _state_dict_of(raw, checkpoint)

    model = build_detector(cfg, deploy=False)
    backbone = model.backbone
    if not callable(getattr(backbone, 'switch_to_deploy', None)):
        raise TypeError(
            f'the backbone {type(backbone).__name__} has no switch_to_deploy(); deploy conversion '
            'needs an mmbasis backbone (SharedBasisResNet, SharedBasisMobileNetV2)'
        )
    _load_strict(model, state_dict, f'checkpoint {checkpoint!r}')
    model.eval()

    in_channels = cfg.model.backbone.get('in_channels', 3)
    x = torch.randn(1, in_channels, *check_shape, generator=torch.Generator().manual_seed(seed))
    ref = _backbone_outputs(backbone, x)
    n_before = len(model.state_dict())
    forms = {}
    if calibrate is not None:
        from mmbasis.apis import calibrate_deploy_forms

        example = torch.randn(1, in_channels, *calibrate, generator=torch.Generator().manual_seed(seed))
        forms = {name: c['form'] for name, c in calibrate_deploy_forms(backbone, example).items()}
    backbone.switch_to_deploy()
    got = _backbone_outputs(backbone, x)
    diff = max((a - b).abs().max().item() for a, b in zip(ref, got))
    scale = max(a.abs().max().item() for a in ref)
    if len(ref) != len(got) or diff > 1e-4 * max(scale, 1.0):
        raise RuntimeError(
            f'deploy backbone outputs differ from the training backbone: max |diff| {diff:.3g} at '
            f'output scale {scale:.3g}'
        )
    new_state = OrderedDict((k, v.detach().cpu().contiguous()) for k, v in model.state_dict().items())

    deploy_model = build_detector(cfg, deploy=True, deploy_forms=forms)
    _load_strict(deploy_model, new_state, 'the deploy state dict')

    dropped = (
        tuple(k for k in raw if k not in ('meta', 'state_dict'))
        if isinstance(raw, Mapping) and 'state_dict' in raw
        else ()
    )
    meta.update(deploy=True, deploy_source=osp.basename(str(checkpoint)))
    if forms:
        meta['deploy_forms'] = forms
    save_atomic(dict(meta=meta, state_dict=new_state), out, protect=checkpoint)
    return DeployReport(n_before, len(new_state), diff, scale, dropped, forms)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Switch the backbone of a trained detector checkpoint to deploy form')
    parser.add_argument('config', help='training config of the checkpoint')
    parser.add_argument('checkpoint', help='trained checkpoint (.pth); never modified')
    parser.add_argument('out', help='output deploy checkpoint (.pth); written atomically')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override settings of the config, key=value pairs'
    )
    parser.add_argument(
        '--check-size',
        type=int,
        nargs=2,
        default=(64, 64),
        metavar=('H', 'W'),
        help='input size of the before/after backbone check (default 64 64)',
    )
    parser.add_argument(
        '--calibrate',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help="choose each factorised conv's deploy form by timing both here at H x W (kept in meta['deploy_forms'])",
    )
    args = parser.parse_args(argv)
    if args.calibrate and min(args.calibrate) < 32:
        parser.error(f'--calibrate must be at least 32 32, got {args.calibrate[0]} {args.calibrate[1]}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if osp.exists(args.checkpoint) and same_file(args.checkpoint, args.out):
            raise ValueError(f'OUT {args.out!r} is the input checkpoint; choose another output path')
        cfg = read_config(args.config, args.cfg_options)
        calibrate = tuple(args.calibrate) if args.calibrate else None
        report = convert_checkpoint_to_deploy(
            cfg, args.checkpoint, args.out, tuple(args.check_size), calibrate=calibrate
        )
    except (FileNotFoundError, CheckpointFormatError, ValueError, TypeError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(
        f'saved the deploy checkpoint {args.out}: {report.num_tensors_before} -> {report.num_tensors_after} '
        f'tensors; backbone outputs before/after: max |diff| {report.max_abs_diff:.3g} '
        f'(output scale {report.max_abs_ref:.3g})'
    )
    if report.dropped_keys:
        print(f'not carried over (training state): {", ".join(report.dropped_keys)}')
    if report.deploy_forms:
        merged = sum(f == 'merged' for f in report.deploy_forms.values())
        print(f'deploy forms measured: {merged} merged, {len(report.deploy_forms) - merged} factorized')
    backbone = 'deploy=True' + (f', deploy_forms={report.deploy_forms!r}' if report.deploy_forms else '')
    print(
        f'use it with:\n  python tools/test.py {args.config} {args.out}   (reads the deploy settings from its meta)\n'
        f'or set model = dict(backbone=dict({backbone})) in a config inheriting the training one'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
