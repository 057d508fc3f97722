"""Helpers shared by the tests (a small testing package: tiny configs and runs, a toy detector, data writers)."""

import os
from contextlib import contextmanager

import torch
from torch.nn.modules.batchnorm import _BatchNorm

#: the regulariser as every config of ours enables it (tests/test_configs/test_pairs.py checks each config)
REGULARISER = dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)


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


def sha256(path: str) -> str:
    """Hex digest of a file (to show that a tool left its input untouched)."""
    import hashlib

    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def free_port() -> str:
    """A free TCP port on the loopback interface (for torchrun)."""
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def load_tool(relpath: str):
    """Import a script under tools/ as a module (to call its functions or ``main(argv)`` in-process)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / relpath
    spec = importlib.util.spec_from_file_location('mmbasis_tool_' + path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def umask(mask: int):
    """The process's umask set to ``mask`` for the block, restored afterwards."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def assert_deploy_build_equals(build, state_dict, x, outputs) -> None:
    """A backbone built in deploy form (``build()``) takes ``state_dict`` strictly and gives exactly ``outputs`` on
    ``x``."""
    deployed = build()
    deployed.load_state_dict(state_dict, strict=True)
    deployed.eval()
    with torch.no_grad():
        for a, b in zip(outputs, deployed(x)):
            assert torch.equal(a, b)


def untie(convs) -> list:
    """Give every basis convolution of ``convs`` its own copy of the shared basis it references (a trainable
    Parameter); the copies, in order. The untied network computes what the tied one does, with one tensor per use."""
    copies = []
    for conv in convs:
        own = torch.nn.Parameter(conv.shared_basis.detach().clone())
        conv._shared = (own,)
        copies.append(own)
    return copies
