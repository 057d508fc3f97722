"""Refusing weights that do not fit a shared-basis backbone, whoever loads them.

mmengine loads checkpoints with ``strict=False`` (the runner's ``load_from``, ``Pretrained`` init) and only logs
what did not fit, so a deploy checkpoint given to a backbone built in another form (``deploy=True`` without the
checkpoint's ``deploy_forms``, or without ``deploy=True`` at all), or a plain ResNet checkpoint given as
``Pretrained`` weights, ran on with part of the backbone random. Two checks stop that:

* :func:`check_incoming_state`, in the backbone's own ``_load_from_state_dict``, which every loader passes
  (mmengine's ``load_checkpoint`` and ``PretrainedInit``, ``nn.Module.load_state_dict`` strict or not):

  - a tensor with one of the backbone's names but another shape is refused (any mode);
  - a backbone in deploy form takes only weights that name all its tensors (a deploy backbone is never partly
    initialised: it is built to run a checkpoint);
  - a backbone in training form refuses folded (deploy-form) weights that leave some of its tensors unfilled.

* :func:`check_pretrained_fits`, before a ``Pretrained`` init_cfg is applied: the checkpoint must fill at least
  ``min_match`` (90 %) of the backbone's values.

Partial loads of the training form stay possible where they are meant to be (a plain ResNet's stem and first
blocks by name). Both checks word their findings with :mod:`mmbasis.utils.state_dict`.
"""

from typing import Mapping, Optional, Sequence, Union

import torch.nn as nn

from ...compat.mmengine_checkpoint import load_pretrained_state
from ...deploy.meta import form_hint
from ...utils.checkpoint_io import strip_module_prefix
from ...utils.misc import brief
from ...utils.state_dict import compare_keys


def check_incoming_state(backbone: nn.Module, state_dict: Mapping[str, object], prefix: str) -> None:
    """``ValueError`` when the tensors of ``state_dict`` under ``prefix`` do not fit ``backbone`` (see the module).

    Names the keys, both shapes of a shape mismatch and what to do. Does nothing when ``state_dict`` has no key
    under ``prefix`` (a load that does not concern the backbone).
    """
    given = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not given:
        return
    own = backbone.state_dict()
    deploy = bool(getattr(backbone, 'deploy', False))
    fit = compare_keys(own, given)
    hint = form_hint(backbone, given, list(fit.missing))
    refuse_missing = bool(fit.missing) and (deploy or bool(hint))
    if not fit.shapes and not refuse_missing:
        return
    problems = fit.problems(limit=4, prefix=prefix)
    problems = [p for p in problems if p.startswith('shape mismatches')]
    if refuse_missing:
        unexpected = brief((prefix + k for k in fit.unexpected), 4)
        problems.append(
            f'{len(fit.missing)} of its {len(own)} tensors are not in the checkpoint: '
            f'{brief(prefix + k for k in fit.missing)}'
            + (f'; the checkpoint has instead: {unexpected}' if unexpected else '')
        )
    hint = hint or 'the checkpoint was written for another configuration of this backbone (depth, ranks, shared_convs)'
    what = f'the weights under {prefix!r} of this state dict' if prefix else 'these weights'
    raise ValueError(
        f'{type(backbone).__name__} ({"deploy" if deploy else "training"} form) refuses {what} '
        f'({"; ".join(problems)}); loading them would leave the backbone partly random or unchanged, which '
        f"mmengine's non-strict loading only logs. Fix: {hint}."
    )


def _pretrained_cfg(init_cfg: Union[None, dict, Sequence[dict]]) -> Optional[dict]:
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return next((c for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained'), None)


def check_pretrained_fits(module: nn.Module, init_cfg, min_match: float) -> None:
    """``ValueError`` unless the ``Pretrained`` checkpoint of ``init_cfg`` fills ``min_match`` of ``module``'s values.

    A tensor is filled when the checkpoint has its name (after ``prefix`` and ``module.`` are removed, as
    mmengine does) with the same shape; the fraction counts values (elements), so that missing shared bases
    weigh what they hold. Does nothing without a ``Pretrained`` entry. Above the threshold the load itself still
    refuses shape mismatches and weights of another (deploy) form (:func:`check_incoming_state`), whose advice this
    message shares.
    """
    cfg = _pretrained_cfg(init_cfg)
    if cfg is None:
        return
    path, prefix = cfg.get('checkpoint'), cfg.get('prefix')
    state = strip_module_prefix(load_pretrained_state(path, prefix))
    own = module.state_dict()
    fit = compare_keys(own, state, optional=())
    mismatched = {k for k, _, _ in fit.shapes}
    matched = [k for k in own if k in state and k not in mismatched]
    fraction = sum(own[k].numel() for k in matched) / max(1, sum(v.numel() for v in own.values()))
    if fraction >= min_match:
        return
    hint = form_hint(module, state, list(fit.missing))
    if hint:
        hint = f' Fix: {hint}.'
    elif any('shared_basis' in k for k in fit.missing) and not any('shared_basis' in k for k in state):
        hint = (
            ' It looks like a plain ResNet checkpoint: turn it into this backbone with '
            'tools/model_converters/plain_to_shared.py (or netrl2_to_mmbasis.py for official Net_RL2 weights).'
        )
    raise ValueError(
        f'the Pretrained checkpoint {path!r}{f" (prefix {prefix!r})" if prefix else ""} does not fit '
        f'{type(module).__name__}: only {len(matched)} of its {len(own)} tensors match by name and shape, holding '
        f'{fraction:.0%} of its values (at least {min_match:.0%} are required, otherwise training would start from '
        'a largely random backbone). '
        f'Missing: {brief(fit.missing, 4) or "none"}; shape mismatches (checkpoint vs model): '
        f'{brief(fit.shape_lines(), 4) or "none"}.' + hint
    )
