"""Activation checkpointing of mmdet's residual blocks that is correct when blocks share parameters.

For: mmdet 3.3.0, whose ``BasicBlock``/``Bottleneck`` (``with_cp=True``) call ``torch.utils.checkpoint`` in its
reentrant form, which with parameters shared by several checkpointed blocks (our shared bases) and under DDP gives
wrong or missing gradients; torch >= 2.4 warns that ``use_reentrant`` must be passed explicitly.
Remove when: mmdet's blocks pass ``use_reentrant=False`` themselves; ``tests/test_models/test_backbones/
test_shared_resnet.py`` (``with_cp`` gradients equal those without) shows it.
"""

import torch.utils.checkpoint as cp
from torch import Tensor


class NonReentrantCheckpointMixin:
    """Mixed in before an mmdet residual block: ``with_cp`` uses non-reentrant checkpointing; otherwise unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward_no_cp, x, use_reentrant=False)
        return super().forward(x)

    def _forward_no_cp(self, x: Tensor) -> Tensor:
        self.with_cp = False
        try:
            return super().forward(x)
        finally:
            self.with_cp = True
