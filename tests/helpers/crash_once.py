"""A hook for tests of interrupted runs: the training process dies (``os._exit``, no clean-up, as when a machine's
sitting ends) at the first iteration of epoch ``epoch`` (0-based), once: it leaves ``marker`` behind and does nothing
while the marker exists, so the same config resumed afterwards trains to the end."""

import os

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class CrashOnceHook(Hook):
    def __init__(self, marker: str, epoch: int = 1) -> None:
        self.marker, self.epoch = marker, epoch

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.epoch == self.epoch and not os.path.exists(self.marker):
            open(self.marker, 'w').close()
            os._exit(3)
