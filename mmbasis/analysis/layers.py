"""Where the time of a factorised convolution goes: a training step of basis -> BN -> coefficients -> BN against the
plain k x k conv -> BN it replaces, at the input size it sees inside the network, and the basis convolution alone at
its rank ``R`` and at ``R`` rounded down to a multiple of 16 (CPU and GPU convolution kernels work on blocks of
channels), beside the plain convolution (:func:`bench_layers`).
"""

import statistics
from typing import Dict, List, Tuple

import torch
from torch import nn

from .backbones import build_backbone, train_step_fn
from .timing import Settings, time_interleaved


def factorized_geometries(cfg: dict, x: torch.Tensor) -> List[Tuple[str, object, Tuple[int, int]]]:
    """``(first layer name, FactorizedConv2d, input (H, W))`` for each distinct factorised-convolution geometry
    of the backbone ``cfg`` on an input like ``x``."""
    from mmbasis.models.layers import FactorizedConv2d

    model = build_backbone(cfg).eval()
    found: Dict[tuple, Tuple[str, object, Tuple[int, int]]] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, FactorizedConv2d):
            b = m.basis
            key = (m.in_channels, b.unique_rank, b.shared_rank, m.out_channels, b.kernel_size, b.stride)

            def hook(mod, inputs, out, key=key, name=name):
                found.setdefault(key, (name, mod, tuple(inputs[0].shape[-2:])))

            handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x[:1].cpu())
    for h in handles:
        h.remove()
    return list(found.values())


def bench_layers(name: str, cfg: dict, settings: Settings, device: torch.device) -> List[dict]:
    """Per distinct factorised convolution of ``name``: a training step (forward + backward) of basis -> BN ->
    coefficients -> BN against the plain k x k conv -> BN it replaces, and of the basis convolution alone at its
    rank ``R`` and at ``R`` rounded down to a multiple of 16 (what the rank would cost if convolution kernels did
    not work on blocks of channels), beside the plain convolution."""
    from mmbasis.models.layers import FactorizedConv2d

    x = torch.randn(settings.batch, 3, settings.size, settings.size)
    rows = []
    for layer, m, (h, w) in factorized_geometries(cfg, x):
        b = m.basis
        geo = dict(stride=b.stride, padding=b.padding, dilation=b.dilation)
        r16 = max(16, b.rank // 16 * 16)
        torch.manual_seed(0)
        inp = torch.randn(settings.batch, m.in_channels, h, w, device=device)
        shared = nn.Parameter(torch.randn(b.shared_rank, m.in_channels, *b.kernel_size)) if b.shared_rank else None
        ours = nn.Sequential(
            FactorizedConv2d(m.in_channels, m.out_channels, b.unique_rank, shared, kernel_size=b.kernel_size[0], **geo),
            nn.BatchNorm2d(m.out_channels),
        )
        if shared is not None:
            ours.register_parameter('shared_basis', shared)  # owned here, as a stage owns it
        plain = nn.Sequential(
            nn.Conv2d(m.in_channels, m.out_channels, b.kernel_size, bias=False, **geo), nn.BatchNorm2d(m.out_channels)
        )
        convs = [nn.Conv2d(m.in_channels, c, b.kernel_size, bias=False, **geo) for c in (b.rank, r16, m.out_channels)]
        models = [mod.to(device) for mod in (ours, plain, *convs)]
        fns = [train_step_fn(mod, inp) for mod in models]
        t = [statistics.median(v) * 1e3 for v in time_interleaved(fns, settings.reps, settings.warmup, device)]
        k2 = b.kernel_size[0] * b.kernel_size[1]
        rows.append(
            dict(
                model=name,
                layer=layer,
                geometry=f'{m.in_channels}->{b.rank}->{m.out_channels} k{b.kernel_size[0]} s{b.stride[0]} @{h}x{w}',
                mac_ratio=b.rank * (m.in_channels * k2 + m.out_channels) / (m.in_channels * k2 * m.out_channels),
                ours_ms=t[0],
                theirs_ms=t[1],
                ratio=t[0] / t[1],
                rank=b.rank,
                rank16=r16,
                basis_ms=t[2],
                basis16_ms=t[3],
                plain_conv_ms=t[4],
            )
        )
    return rows
