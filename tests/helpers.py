"""Helpers shared by the tests."""
import torch
from torch.nn.modules.batchnorm import _BatchNorm


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


def check_norm_state(modules, train_state: bool) -> bool:
    """True when every BatchNorm's ``training`` flag equals ``train_state``."""
    return all(m.training == train_state for m in modules if isinstance(m, _BatchNorm))


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
