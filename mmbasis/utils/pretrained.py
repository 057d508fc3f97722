"""Checking that a ``Pretrained`` init_cfg fits a backbone before mmengine loads it with ``strict=False``."""

from typing import Optional, Sequence, Union

import torch.nn as nn
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_with_prefix

from .checkpoint_io import strip_module_prefix
from .misc import brief


def _pretrained_cfg(init_cfg: Union[None, dict, Sequence[dict]]) -> Optional[dict]:
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return next((c for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained'), None)


def check_pretrained_fits(module: nn.Module, init_cfg, min_match: float) -> None:
    """``ValueError`` unless the ``Pretrained`` checkpoint of ``init_cfg`` fills ``min_match`` of ``module``'s values.

    A tensor is filled when the checkpoint has its name (after ``prefix`` and ``module.`` are removed, as
    mmengine does) with the same shape; the fraction counts values (elements), so that missing shared bases
    weigh what they hold. Does nothing without a ``Pretrained`` entry. Above the threshold the load itself still
    refuses shape mismatches and weights of another (deploy) form: the backbone's own check,
    ``mmbasis.models.layers.state_check``, whose advice this message shares.
    """
    cfg = _pretrained_cfg(init_cfg)
    if cfg is None:
        return
    path, prefix = cfg.get('checkpoint'), cfg.get('prefix')
    if prefix is None:
        ckpt = _load_checkpoint(path, map_location='cpu', logger='current')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    else:
        state = _load_checkpoint_with_prefix(prefix, path, map_location='cpu')
    state = strip_module_prefix(state)
    own = module.state_dict()
    matched = [k for k, v in own.items() if k in state and tuple(state[k].shape) == tuple(v.shape)]
    fraction = sum(own[k].numel() for k in matched) / max(1, sum(v.numel() for v in own.values()))
    if fraction >= min_match:
        return
    missing = [k for k in own if k not in state]
    shapes = [
        f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}'
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    from mmbasis.models.layers.state_check import form_hint  # noqa: PLC0415  (models import this module)

    hint = form_hint(module, state, missing)
    if hint:
        hint = f' Fix: {hint}.'
    elif any('shared_basis' in k for k in missing) and not any('shared_basis' in k for k in state):
        hint = (
            ' It looks like a plain ResNet checkpoint: turn it into this backbone with '
            'tools/model_converters/plain_to_shared.py (or netrl2_to_mmbasis.py for official Net_RL2 weights).'
        )
    raise ValueError(
        f'the Pretrained checkpoint {path!r}{f" (prefix {prefix!r})" if prefix else ""} does not fit '
        f'{type(module).__name__}: only {len(matched)} of its {len(own)} tensors match by name and shape, holding '
        f'{fraction:.0%} of its values (at least {min_match:.0%} are required, otherwise training would start from '
        'a largely random backbone). '
        f'Missing: {brief(missing, 4) or "none"}; shape mismatches (checkpoint vs model): {brief(shapes, 4) or "none"}.'
        + hint
    )
