"""What a deploy checkpoint records, and telling the form of a state dict (training or folded) from its keys.

A deploy checkpoint (written by :func:`mmbasis.deploy.convert_checkpoint_to_deploy`, i.e.
``tools/model_converters/switch_to_deploy.py``) holds the folded state dict and ``meta`` with ``deploy=True``,
``deploy_source`` (the training checkpoint's file name) and, when the forms were chosen by measurement,
``deploy_forms`` (``{factorised conv name: 'merged' | 'factorized'}``). The backbone must be built with the same
settings (``deploy=True``, ``deploy_forms``) to take those weights: :func:`apply_deploy_meta` sets them in a config
from the checkpoint's meta, read without loading its tensors.
"""

from typing import Dict, List, Mapping, Optional

from mmengine.logging import print_log

from ..utils.checkpoint_io import load_meta
from ..utils.misc import brief

FIX_DEPLOY = (
    "build the backbone with deploy=True and the checkpoint's meta['deploy_forms'] as deploy_forms "
    '(tools/model_converters/switch_to_deploy.py prints these settings; our tools/test.py reads both from the '
    "checkpoint's meta)"
)
FIX_TRAINING = (
    'these are training-form weights (BatchNorm statistics, shared bases): build the backbone without deploy=True '
    "and fold it after loading (our tools/test.py --deploy, or custom_hooks=[dict(type='SwitchToDeployHook')])"
)


def deploy_meta(meta: Mapping, source: str, forms: Optional[Dict[str, str]] = None) -> dict:
    """``meta`` of a deploy checkpoint: the training checkpoint's ``meta`` plus ``deploy``, ``deploy_source`` and the
    measured ``deploy_forms`` (when given)."""
    out = dict(meta, deploy=True, deploy_source=source)
    if forms:
        out['deploy_forms'] = dict(forms)
    return out


def deploy_settings(meta: Mapping) -> Optional[dict]:
    """The backbone arguments a checkpoint with this ``meta`` needs (``deploy=True`` [, ``deploy_forms``]), or None
    for a training checkpoint."""
    if not (isinstance(meta, Mapping) and meta.get('deploy')):
        return None
    settings = dict(deploy=True)
    if meta.get('deploy_forms'):
        settings['deploy_forms'] = dict(meta['deploy_forms'])
    return settings


def apply_deploy_meta(cfg, checkpoint: str) -> Optional[dict]:
    """Set ``model.backbone.deploy`` (and the measured ``deploy_forms``) in ``cfg`` when ``checkpoint`` is a deploy
    checkpoint, and say so; return the settings applied (None for a training checkpoint). Only the checkpoint's
    ``meta`` is read (:func:`~mmbasis.utils.checkpoint_io.load_meta`)."""
    settings = deploy_settings(load_meta(checkpoint))
    if settings is None:
        return None
    cfg.model.get('backbone', {}).update(settings)
    forms = settings.get('deploy_forms')
    print_log(
        f'{checkpoint} is a deploy checkpoint: building the backbone with deploy=True'
        + (f' and its {len(forms)} measured deploy forms' if forms else ''),
        logger='current',
    )
    return settings


def is_folded(keys) -> bool:
    """Deploy-form weights carry no BatchNorm statistics and no shared basis."""
    return not any(k.endswith('running_mean') or 'shared_basis' in k for k in keys)


def form_differences(missing: List[str], given: Mapping[str, object]) -> Dict[str, str]:
    """``{conv: form in the checkpoint}`` for deploy convolutions stored in the other form there (read from names:
    a merged convolution is ``conv.weight``, a factorised one ``conv.0.weight`` and ``conv.1.weight``)."""
    forms = {}
    for key in missing:
        if key.endswith('.0.weight') and key[: -len('.0.weight')] + '.weight' in given:
            forms[key[: -len('.0.weight')]] = 'merged'
        elif key.endswith('.weight') and key[: -len('.weight')] + '.0.weight' in given:
            forms[key[: -len('.weight')]] = 'factorized'
    return forms


def form_hint(backbone, given: Mapping[str, object], missing: List[str]) -> str:
    """What to do when ``given`` (keys without prefix) holds the backbone in another form: ``''`` if it does not.

    Deploy-form weights for a training-form backbone, training-form weights for a deploy-form one, or deploy
    weights of other deploy forms (``missing``: the backbone's keys ``given`` lacks).
    """
    deploy, folded = bool(getattr(backbone, 'deploy', False)), is_folded(given)
    if deploy and not folded:
        return FIX_TRAINING
    if deploy:
        forms = form_differences(missing, given)
        shown = brief(f'{k}: {v!r}' for k, v in forms.items()) if forms else ''
        return (
            'the checkpoint holds its convolutions in other deploy forms than this backbone'
            + (f' (in the checkpoint: {shown})' if shown else '')
            + f': {FIX_DEPLOY}'
        )
    if folded and not is_folded(backbone.state_dict()):
        return f'these are deploy-form weights (BatchNorms folded into the convolutions): {FIX_DEPLOY}'
    return ''
