"""Deployment: everything that turns a trained shared-basis model into its deploy form and checks it.

* :mod:`.folding`: BatchNorm folding and basis/factorised convolutions turned into plain ones (what the backbones'
  ``switch_to_deploy()`` calls), the two exact deploy forms and the multiply-add rule between them;
* :mod:`.calibration`: the deploy form of each factorised convolution chosen by timing both on the target device;
* :mod:`.conversion`: a built detector (``SwitchToDeployHook``) or a checkpoint file
  (``tools/model_converters/switch_to_deploy.py``) turned into the deploy form;
* :mod:`.meta`: what a deploy checkpoint records, read cheaply, and the form of a state dict told from its keys;
* :mod:`.onnx`, :mod:`.end2end`, :mod:`.ops`, :mod:`.runtime` (imported on demand: optional packages): ONNX export
  of backbones and of whole detectors (image in, boxes out), run and checked in onnxruntime and OpenVINO.

This package sits below :mod:`mmbasis.models` (the models call its folding); it recognises the modules it folds by
what they offer, not by their classes.
"""

from .calibration import calibrate_deploy_forms, format_choices
from .conversion import (
    DeployReport,
    build_detector,
    convert_checkpoint_to_deploy,
    find_backbone,
    load_strict,
    switch_model_to_deploy,
)
from .folding import DEPLOY_FORMS, bn_scale_shift, deploy_form, fuse_conv_norm
from .meta import apply_deploy_meta, deploy_meta, deploy_settings, form_hint, is_folded

__all__ = [
    'DEPLOY_FORMS',
    'DeployReport',
    'apply_deploy_meta',
    'bn_scale_shift',
    'build_detector',
    'calibrate_deploy_forms',
    'convert_checkpoint_to_deploy',
    'deploy_form',
    'deploy_meta',
    'deploy_settings',
    'find_backbone',
    'form_hint',
    'format_choices',
    'fuse_conv_norm',
    'is_folded',
    'load_strict',
    'switch_model_to_deploy',
]
