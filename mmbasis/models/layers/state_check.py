"""Refusing weights that do not fit a shared-basis backbone's structure, whoever loads them.

mmengine loads checkpoints with ``strict=False`` (the runner's ``load_from``, ``Pretrained`` init) and only logs
what did not fit, so a deploy checkpoint given to a backbone built in another form (``deploy=True`` without the
checkpoint's ``deploy_forms``, or without ``deploy=True`` at all) ran on with part of the backbone random. The
backbone checks what it is handed in its own ``_load_from_state_dict``, which every loader passes (mmengine's
``load_checkpoint`` and ``PretrainedInit``, ``nn.Module.load_state_dict`` strict or not):

* a tensor with one of the backbone's names but another shape is refused (any mode);
* a backbone in deploy form takes only weights that name all its tensors (a deploy backbone is never partly
  initialised: it is built to run a checkpoint);
* a backbone in training form refuses folded (deploy-form) weights that leave some of its tensors unfilled.

Partial loads of the training form stay possible where they are meant to be (a plain ResNet's stem and first
blocks by name; ``Pretrained`` checkpoints are held to the 90 % rule of ``mmbasis.utils.pretrained``).
"""

from typing import Dict, List, Mapping

import torch.nn as nn

from ...utils.misc import brief

_FIX_DEPLOY = (
    "build the backbone with deploy=True and the checkpoint's meta['deploy_forms'] as deploy_forms "
    '(tools/model_converters/switch_to_deploy.py prints these settings; our tools/test.py reads both from the '
    "checkpoint's meta)"
)
_FIX_TRAINING = (
    'these are training-form weights (BatchNorm statistics, shared bases): build the backbone without deploy=True '
    "and fold it after loading (our tools/test.py --deploy, or custom_hooks=[dict(type='SwitchToDeployHook')])"
)


def _is_folded(keys) -> bool:
    """Deploy-form weights carry no BatchNorm statistics and no shared basis."""
    return not any(k.endswith('running_mean') or 'shared_basis' in k for k in keys)


def _form_differences(missing: List[str], given: Mapping[str, object]) -> Dict[str, str]:
    """``{conv: form in the checkpoint}`` for deploy convolutions stored in the other form there (read from names:
    a merged convolution is ``conv.weight``, a factorised one ``conv.0.weight`` and ``conv.1.weight``)."""
    forms = {}
    for key in missing:
        if key.endswith('.0.weight') and key[: -len('.0.weight')] + '.weight' in given:
            forms[key[: -len('.0.weight')]] = 'merged'
        elif key.endswith('.weight') and key[: -len('.weight')] + '.0.weight' in given:
            forms[key[: -len('.weight')]] = 'factorized'
    return forms


def form_hint(backbone: nn.Module, given: Mapping[str, object], missing: List[str]) -> str:
    """What to do when ``given`` (keys without prefix) holds the backbone in another form: ``''`` if it does not.

    Deploy-form weights for a training-form backbone, training-form weights for a deploy-form one, or deploy
    weights of other deploy forms (``missing``: the backbone's keys ``given`` lacks).
    """
    deploy, folded = bool(getattr(backbone, 'deploy', False)), _is_folded(given)
    if deploy and not folded:
        return _FIX_TRAINING
    if deploy:
        forms = _form_differences(missing, given)
        shown = brief(f'{k}: {v!r}' for k, v in forms.items()) if forms else ''
        return (
            'the checkpoint holds its convolutions in other deploy forms than this backbone'
            + (f' (in the checkpoint: {shown})' if shown else '')
            + f': {_FIX_DEPLOY}'
        )
    if folded and not _is_folded(backbone.state_dict()):
        return f'these are deploy-form weights (BatchNorms folded into the convolutions): {_FIX_DEPLOY}'
    return ''


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
    shapes = [
        f'{prefix}{k} {tuple(v.shape)} vs {tuple(own[k].shape)}'
        for k, v in given.items()
        if k in own and hasattr(v, 'shape') and tuple(v.shape) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in given and not k.endswith('num_batches_tracked')]
    hint = form_hint(backbone, given, missing)
    refuse_missing = bool(missing) and (deploy or bool(hint))
    if not shapes and not refuse_missing:
        return
    problems = []
    if shapes:
        problems.append(f'shape mismatches (checkpoint vs model): {brief(shapes, 4)}')
    if refuse_missing:
        unexpected = [f'{prefix}{k}' for k in given if k not in own]
        problems.append(
            f'{len(missing)} of its {len(own)} tensors are not in the checkpoint: {brief(prefix + k for k in missing)}'
            + (f'; the checkpoint has instead: {brief(unexpected, 4)}' if unexpected else '')
        )
    hint = hint or 'the checkpoint was written for another configuration of this backbone (depth, ranks, shared_convs)'
    what = f'the weights under {prefix!r} of this state dict' if prefix else 'these weights'
    raise ValueError(
        f'{type(backbone).__name__} ({"deploy" if deploy else "training"} form) refuses {what} '
        f'({"; ".join(problems)}); loading them would leave the backbone partly random or unchanged, which '
        f"mmengine's non-strict loading only logs. Fix: {hint}."
    )
