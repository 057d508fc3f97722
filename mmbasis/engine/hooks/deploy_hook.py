"""``SwitchToDeployHook``: test a *training* checkpoint in deploy form, folded after it has been loaded.

mmengine's runner loads the checkpoint before the test loop starts, so folding in ``before_test`` turns the
loaded weights (not the initial ones) into the deploy form: the compact training checkpoint stays the
artefact, nobody has to store the larger folded weights. Our ``tools/test.py --deploy`` adds the hook; with
mmdet's own ``tools/test.py``: ``--cfg-options "custom_hooks=[dict(type='SwitchToDeployHook')]"``.
Test-time wrappers (DDP, ``DetTTAModel``) are looked through; a backbone without ``switch_to_deploy`` is an
error, not a silent no-op. With ``calibrate_shape=(H, W)`` each factorised convolution first gets the deploy
form that is faster *on this device* at that input size (``mmbasis.deploy.calibrate_deploy_forms``; the
choices are logged), instead of the one with fewer multiply-adds. The work is
:func:`mmbasis.deploy.switch_model_to_deploy`.
"""

from typing import Optional, Sequence

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from ...deploy import find_backbone, switch_model_to_deploy

__all__ = ['SwitchToDeployHook', 'find_backbone']


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
        switch_model_to_deploy(runner.model, self.calibrate_shape, self.calibrate_reps)
