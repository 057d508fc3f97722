"""``SwitchToDeployHook``: test a *training* checkpoint in deploy form, folded after it has been loaded.

mmengine's runner loads the checkpoint before the test loop starts, so folding in ``before_test`` turns the
loaded weights (not the initial ones) into the deploy form: the compact training checkpoint stays the
artefact, nobody has to store the larger folded weights. Our ``tools/test.py --deploy`` adds the hook; with
mmdet's own ``tools/test.py``: ``--cfg-options "custom_hooks=[dict(type='SwitchToDeployHook')]"``.
Test-time wrappers (DDP, ``DetTTAModel``) are looked through; a backbone without ``switch_to_deploy`` is an
error, not a silent no-op. With ``calibrate_shape=(H, W)`` each factorised convolution first gets the deploy
form that is faster *on this device* at that input size (``mmbasis.apis.calibrate_deploy_forms``; the
choices are logged), instead of the one with fewer multiply-adds.
"""

from typing import Optional, Sequence

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper


def find_backbone(model):
    """The backbone of a detector, looking through DDP-like wrappers and ``DetTTAModel`` (``.module``)."""
    while is_model_wrapper(model) or (not hasattr(model, 'backbone') and hasattr(model, 'module')):
        model = model.module
    if not hasattr(model, 'backbone'):
        raise TypeError(f'{type(model).__name__} has no backbone to switch to deploy form')
    return model.backbone


@HOOKS.register_module()
class SwitchToDeployHook(Hook):
    """Call ``model.backbone.switch_to_deploy()`` once the test checkpoint is loaded (``before_test``)."""

    priority = 'VERY_HIGH'

    def __init__(self, calibrate_shape: Optional[Sequence[int]] = None, calibrate_reps: int = 10) -> None:
        if calibrate_shape is not None and (
            len(calibrate_shape) != 2
            or any(not isinstance(s, int) or isinstance(s, bool) or s < 32 for s in calibrate_shape)
        ):
            raise ValueError(f'calibrate_shape={calibrate_shape!r} is not allowed: give (H, W), integers >= 32')
        if not isinstance(calibrate_reps, int) or calibrate_reps < 1:
            raise ValueError(f'calibrate_reps={calibrate_reps!r} is not allowed: an integer >= 1')
        self.calibrate_shape = None if calibrate_shape is None else tuple(calibrate_shape)
        self.calibrate_reps = calibrate_reps

    def before_test(self, runner) -> None:
        backbone = find_backbone(runner.model)
        if not hasattr(backbone, 'switch_to_deploy'):
            raise TypeError(
                f'SwitchToDeployHook: the backbone {type(backbone).__name__} has no switch_to_deploy(); '
                'only mmbasis backbones (SharedBasisResNet, SharedBasisMobileNetV2) can be folded'
            )
        if getattr(backbone, 'deploy', False):
            print_log('SwitchToDeployHook: the backbone is already in deploy form', logger='current')
            return
        if self.calibrate_shape is not None:
            from mmbasis.apis.deploy_calibration import calibrate_deploy_forms, format_choices

            param = next(backbone.parameters())
            example = torch.randn(1, 3, *self.calibrate_shape, device=param.device, dtype=param.dtype)
            choices = calibrate_deploy_forms(backbone, example, reps=self.calibrate_reps)
            print_log(
                f'SwitchToDeployHook: deploy forms measured at {self.calibrate_shape}:\n'
                f'{format_choices(choices) or "(no factorised convolutions)"}',
                logger='current',
            )
        backbone.switch_to_deploy()
        print_log(f'SwitchToDeployHook: {type(backbone).__name__} folded into its deploy form', logger='current')
