"""Every place where mmbasis works around a version of mmengine, mmdet or torch, and when each may go.

One module per concern; each module's docstring names the versions it is for and the condition for removing it.

=============================  ==========================================  =============================================
module                         works around                                remove when
=============================  ==========================================  =============================================
``checkpoint_allowlist``       torch >= 2.6 ``weights_only`` refusing      mmengine loads its checkpoints with
                               mmengine 0.10.7 training checkpoints        ``weights_only=True`` itself
``distributed``                mmengine 0.10.7 CPU launches (CUDA          mmengine initialises CPU launches; torch's
                               ``set_device``); torch 2.14 gloo exit abort gloo group survives interpreter exit
``mmengine_checkpoint``        mmengine 0.10.7 ``PretrainedInit`` reading  mmengine offers the prefix load publicly
                               through private functions
``mmengine_loops``             mmengine 0.10.7 loops: no hook on a failed  mmengine calls a hook on failure and
                               validation; resume draws skipped batches    restores the random state on resume
``mmdet_asserts``              mmdet 3.3.0 ``ResNet`` argument checks      mmdet raises ``ValueError`` naming the value
                               by bare ``assert``
``mmdet_blocks``               mmdet 3.3.0 blocks' reentrant checkpointing mmdet's blocks pass ``use_reentrant=False``
=============================  ==========================================  =============================================

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
