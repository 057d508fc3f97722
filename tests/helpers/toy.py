"""A tiny mmengine model with a shared-basis backbone, for hook tests without a detector."""

import torch
from mmengine.model import BaseModel

from mmbasis.models import SharedBasisResNet


class ToyDetector(BaseModel):
    """``backbone`` + a task loss that is a per-sample mean, so DDP averaging equals the global mean."""

    def __init__(self, norm_eval: bool = True, **backbone):
        super().__init__()
        cfg = dict(
            depth=18, shared_rank=2, unique_rank=1, base_channels=8, norm_eval=norm_eval, zero_init_residual=False
        )
        cfg.update(backbone)
        self.backbone = SharedBasisResNet(**cfg)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.backbone(inputs)
        if mode == 'loss':
            return dict(loss_task=sum(f.pow(2).mean() for f in feats))
        return feats


def toy_batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randn(n, 3, 32, 32, generator=g))


def toy_off_orthonormal(scale: float, **backbone) -> ToyDetector:
    """A toy detector (seed 0) whose shared bases are scaled by ``scale``: away from orthonormal, so that the
    regulariser has a value and a gradient."""
    torch.manual_seed(0)
    model = ToyDetector(**backbone)
    with torch.no_grad():
        for p in model.backbone.shared_bases().values():
            p.mul_(scale)
    return model
