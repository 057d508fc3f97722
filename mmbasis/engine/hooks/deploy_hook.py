"""``SwitchToDeployHook``: test a *training* checkpoint in deploy form, folded after it has been loaded.

mmengine's runner loads the checkpoint before the test loop starts, so folding in ``before_test`` turns the
loaded weights (not the initial ones) into the deploy form: the compact training checkpoint stays the
artefact, nobody has to store the larger folded weights. Our ``tools/test.py --deploy`` adds the hook; with
mmdet's own ``tools/test.py``: ``--cfg-options "custom_hooks=[dict(type='SwitchToDeployHook')]"``.
Test-time wrappers (DDP, ``DetTTAModel``) are looked through; a backbone without ``switch_to_deploy`` is an
error, not a silent no-op.
"""

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
        backbone.switch_to_deploy()
        print_log(f'SwitchToDeployHook: {type(backbone).__name__} folded into its deploy form', logger='current')
