"""Every place where mmbasis works around a version of mmengine, mmdet or torch, and when each may go.

One module per concern; each module's docstring names the versions it is for and the condition for removing it.

* ``checkpoint_allowlist``: torch >= 2.6 ``weights_only`` refusing mmengine 0.10.7 training checkpoints.
  Remove when mmengine loads its checkpoints with ``weights_only=True`` itself.
* ``distributed``: mmengine 0.10.7 CPU launches (CUDA ``set_device``); torch 2.14's gloo abort at exit.
  Remove when mmengine initialises CPU launches and torch's gloo group survives interpreter exit.
* ``mmengine_checkpoint``: mmengine 0.10.7 ``PretrainedInit`` reading through private functions.
  Remove when mmengine offers the prefix load publicly.
* ``mmengine_loops``: mmengine 0.10.7 loops: no hook on a failed validation; resume draws skipped batches.
  Remove when mmengine calls a hook on failure and restores the random state on resume.
* ``mmdet_asserts``: mmdet 3.3.0 ``ResNet`` argument checks by bare ``assert``.
  Remove when mmdet raises ``ValueError`` naming the value.
* ``mmdet_blocks``: mmdet 3.3.0 blocks' reentrant checkpointing.
  Remove when mmdet's blocks pass ``use_reentrant=False``.

Workarounds that stay with the code they belong to (a subclass is their natural form), listed here so that this is
the one list to review when a dependency is upgraded:

* ``mmbasis.models.dense_heads.FixedSSDHead``: mmdet 3.3.0 ``SSDHead.predict`` reads ``self.loss_cls``, which it
  never defines (open-mmlab/mmdetection#11780); remove when mmdet fixes it (configs then use ``SSDHead``).
* ``mmbasis.engine.hooks.SafeCheckpointHook``: mmengine 0.10.7 ``CheckpointHook`` deletes old and best checkpoints
  before writing the new ones and stores no random state; its ``_save_checkpoint`` and best-checkpoint logic are
  overridden (the method names of 0.10.7). Remove the overrides when mmengine writes atomically in a safe order.
* ``mmbasis.models.backbones.SharedBasisResNet``: checks of ``frozen_stages``/``out_indices`` that mmdet 3.3.0
  lets through, and ``train()`` returning ``self`` (mmdet 3.3.0's returns None).
"""

from .checkpoint_allowlist import (
    HISTORY_BUFFER_METHODS,
    checkpoint_safe_globals,
    globals_needing_allowlist,
    history_buffer_getattr,
    install_checkpoint_allowlist,
)
from .distributed import setup_cpu_distributed, shutdown_distributed, slurm_environment

__all__ = [
    'HISTORY_BUFFER_METHODS',
    'checkpoint_safe_globals',
    'globals_needing_allowlist',
    'history_buffer_getattr',
    'install_checkpoint_allowlist',
    'setup_cpu_distributed',
    'shutdown_distributed',
    'slurm_environment',
]
