"""Turning a trained detector into its deploy form: the built model (:func:`switch_model_to_deploy`, what
``SwitchToDeployHook`` does after the runner has loaded a checkpoint) or a checkpoint file
(:func:`convert_checkpoint_to_deploy`, what ``tools/model_converters/switch_to_deploy.py`` does).
"""

import copy
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from torch import Tensor

from ..utils.checkpoint_io import CheckpointFormatError, load_weights_only, save_atomic, split_checkpoint
from ..utils.state_dict import compare_keys
from .calibration import calibrate_deploy_forms, format_choices
from .meta import deploy_meta

#: the relative error of the backbone outputs a deploy conversion may change them by
TOLERANCE = 1e-4


def find_backbone(model: nn.Module) -> nn.Module:
    """The backbone of a detector, looking through DDP-like wrappers and ``DetTTAModel`` (``.module``)."""
    while is_model_wrapper(model) or (not hasattr(model, 'backbone') and hasattr(model, 'module')):
        model = model.module
    if not hasattr(model, 'backbone'):
        raise TypeError(f'{type(model).__name__} has no backbone to switch to deploy form')
    return model.backbone


def _foldable(backbone: nn.Module, who: str) -> nn.Module:
    if not callable(getattr(backbone, 'switch_to_deploy', None)):
        raise TypeError(
            f'{who}: the backbone {type(backbone).__name__} has no switch_to_deploy(); only mmbasis backbones '
            '(SharedBasisResNet, SharedBasisMobileNetV2) can be folded'
        )
    return backbone


def switch_model_to_deploy(
    model: nn.Module, calibrate_shape: Optional[Sequence[int]] = None, calibrate_reps: int = 10
) -> Dict[str, Dict[str, object]]:
    """Fold the backbone of ``model`` (a detector, possibly wrapped) into its deploy form, in place.

    With ``calibrate_shape=(H, W)`` each factorised convolution first gets the deploy form that is faster on this
    device at that input size (:func:`calibrate_deploy_forms`, logged). Returns the calibration's choices (empty
    without calibration). A backbone already in deploy form is left as it is.

    Raises:
        TypeError: no backbone, or one without ``switch_to_deploy``.
    """
    backbone = _foldable(find_backbone(model), 'SwitchToDeployHook')
    if getattr(backbone, 'deploy', False):
        print_log('SwitchToDeployHook: the backbone is already in deploy form', logger='current')
        return {}
    choices = {}
    if calibrate_shape is not None:
        param = next(backbone.parameters())
        example = torch.randn(1, 3, *calibrate_shape, device=param.device, dtype=param.dtype)
        choices = calibrate_deploy_forms(backbone, example, reps=calibrate_reps)
        print_log(
            f'SwitchToDeployHook: deploy forms measured at {tuple(calibrate_shape)}:\n'
            f'{format_choices(choices) or "(no factorised convolutions)"}',
            logger='current',
        )
    backbone.switch_to_deploy()
    print_log(f'SwitchToDeployHook: {type(backbone).__name__} folded into its deploy form', logger='current')
    return choices


@dataclass
class DeployReport:
    """What :func:`convert_checkpoint_to_deploy` did.

    Attributes:
        num_tensors_before / num_tensors_after (int): state dict sizes of the training / deploy model.
        max_abs_diff (float): largest absolute backbone output difference between the eval-mode training model and the
            deploy model on a random input (``check_shape``).
        max_abs_ref (float): largest absolute backbone output of the training model on that input (for scale).
        dropped_keys (tuple[str]): top-level checkpoint entries not carried over.
        deploy_forms (dict): the forms chosen by measurement (empty without calibration).
    """

    num_tensors_before: int
    num_tensors_after: int
    max_abs_diff: float
    max_abs_ref: float
    dropped_keys: Tuple[str, ...]
    deploy_forms: Dict[str, str] = field(default_factory=dict)


def build_detector(cfg: Config, deploy: bool, deploy_forms: Optional[Dict[str, str]] = None) -> nn.Module:
    """``MODELS.build(cfg.model)`` on CPU in the config's default scope, with ``backbone.deploy`` set."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    cfg = copy.deepcopy(cfg)
    if deploy:
        cfg.model.backbone.deploy = True
    if deploy_forms:
        cfg.model.backbone.deploy_forms = dict(deploy_forms)
    scope = cfg.get('default_scope', 'mmdet')
    if scope is not None:
        init_default_scope(scope)
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def load_strict(model: nn.Module, state_dict: Mapping[str, Tensor], what: str) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with one clear message for every kind of mismatch."""
    fit = compare_keys(model.state_dict(), state_dict, optional=())
    if fit:
        raise CheckpointFormatError(f'{what} does not fit the model of the config ({"; ".join(fit.problems())})')
    model.load_state_dict(state_dict, strict=True)


def _backbone_outputs(backbone: nn.Module, x: Tensor) -> Tuple[Tensor, ...]:
    with torch.no_grad():
        out = backbone(x)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _check_arguments(cfg: Config, check_shape: Sequence[int]) -> None:
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
    ``(1, C, *check_shape)`` input; switch; check the outputs agree (relative error <= :data:`TOLERANCE`); check that
    the new state dict loads strictly into ``cfg`` built with ``model.backbone.deploy=True``; save
    ``dict(meta=..., state_dict=new)`` atomically (:func:`~mmbasis.deploy.meta.deploy_meta`; training-only entries
    such as the optimizer state are dropped). With ``calibrate=(H, W)`` the deploy form of every factorised
    convolution is chosen by timing both on this machine at that input size (:func:`calibrate_deploy_forms`) and
    recorded as ``meta['deploy_forms']`` (the backbone's ``deploy_forms`` argument rebuilds that structure).

    Raises:
        TypeError: the backbone has no ``switch_to_deploy``.
        ValueError: ``cfg`` already builds the deploy structure, or ``out`` is ``checkpoint``.
        FileNotFoundError, CheckpointFormatError: unreadable checkpoint or keys that do not fit ``cfg``.
        RuntimeError: the deploy model's outputs differ from the training model's.
    """
    _check_arguments(cfg, check_shape)
    raw = load_weights_only(checkpoint)
    state_dict, meta = split_checkpoint(raw, checkpoint)
    if meta.get('deploy'):
        raise CheckpointFormatError(f'{checkpoint!r} is already a deploy checkpoint (meta["deploy"] is True)')
    model = build_detector(cfg, deploy=False)
    backbone = _foldable(model.backbone, 'deploy conversion')
    load_strict(model, state_dict, f'checkpoint {checkpoint!r}')
    model.eval()

    in_channels = cfg.model.backbone.get('in_channels', 3)
    x = torch.randn(1, in_channels, *check_shape, generator=torch.Generator().manual_seed(seed))
    ref = _backbone_outputs(backbone, x)
    n_before = len(model.state_dict())
    forms = {}
    if calibrate is not None:
        example = torch.randn(1, in_channels, *calibrate, generator=torch.Generator().manual_seed(seed))
        forms = {name: c['form'] for name, c in calibrate_deploy_forms(backbone, example).items()}
    backbone.switch_to_deploy()
    got = _backbone_outputs(backbone, x)
    diff = max((a - b).abs().max().item() for a, b in zip(ref, got))
    scale = max(a.abs().max().item() for a in ref)
    if len(ref) != len(got) or diff > TOLERANCE * max(scale, 1.0):
        raise RuntimeError(
            f'deploy backbone outputs differ from the training backbone: max |diff| {diff:.3g} at '
            f'output scale {scale:.3g}'
        )
    new_state = OrderedDict((k, v.detach().cpu().contiguous()) for k, v in model.state_dict().items())
    load_strict(build_detector(cfg, deploy=True, deploy_forms=forms), new_state, 'the deploy state dict')
    dropped = (
        tuple(k for k in raw if k not in ('meta', 'state_dict'))
        if isinstance(raw, Mapping) and 'state_dict' in raw
        else ()
    )
    meta = deploy_meta(meta, osp.basename(str(checkpoint)), forms)
    save_atomic(dict(meta=meta, state_dict=new_state), out, protect=checkpoint)
    return DeployReport(n_before, len(new_state), diff, scale, dropped, forms)
