"""Inputs of a decomposition and what is measured on them: the calibration batch, the BatchNorms between basis and
coefficients calibrated to identities, and the output error of every stage.
"""

import glob
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..models.layers import FactorizedConv2d
from ..utils.misc import check_int

_IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
_IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, mmdet/torchvision normalisation
_IMAGENET_STD = (58.395, 57.12, 57.375)


@torch.no_grad()
def calibrate_basis_norms(model: nn.Module, out: Dict[str, Tensor], inputs: Tensor) -> None:
    """``basis_norm`` of every factorised conv := identity in eval mode, with the statistics of its responses."""
    convs = {n: m for n, m in model.named_modules() if isinstance(m, FactorizedConv2d)}
    for n, m in convs.items():  # identity without statistics, for the calibration pass
        r, eps = m.basis.rank, m.basis_norm.eps
        out[f'{n}.basis_norm.running_mean'], out[f'{n}.basis_norm.running_var'] = torch.zeros(r), torch.ones(r)
        out[f'{n}.basis_norm.weight'], out[f'{n}.basis_norm.bias'] = torch.full((r,), (1 + eps) ** 0.5), torch.zeros(r)
        out[f'{n}.basis_norm.num_batches_tracked'] = torch.tensor(0)
    model.load_state_dict(out, strict=True)
    stats = {}

    def record(name: str):
        def hook(module, args, z):
            z = z.double()
            stats[name] = (z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False))

        return hook

    hooks = [m.basis.register_forward_hook(record(n)) for n, m in convs.items()]
    try:
        model.eval()
        model(inputs)
    finally:
        for h in hooks:
            h.remove()
    for n, (mean, var) in stats.items():
        eps = convs[n].basis_norm.eps
        out[f'{n}.basis_norm.running_mean'], out[f'{n}.basis_norm.running_var'] = mean.float(), var.float()
        out[f'{n}.basis_norm.weight'], out[f'{n}.basis_norm.bias'] = (var + eps).sqrt().float(), mean.float()


@torch.no_grad()
def stage_errors(plain: nn.Module, model: nn.Module, names: Sequence[str], inputs: Tensor) -> List[dict]:
    """Relative output error of every stage: cumulative (from the image) and of the stage alone."""

    def run(net: nn.Module) -> Dict[str, Tuple[Tensor, Tensor]]:
        io = {}
        hooks = [
            getattr(net, n).register_forward_hook(lambda mod, inp, y, n=n: io.__setitem__(n, (inp[0], y)))
            for n in names
        ]
        try:
            net.eval()  # mmdet's ResNet.train returns None
            net(inputs)
        finally:
            for h in hooks:
                h.remove()
        return io

    ref, got = run(plain), run(model)
    rows = []
    for n in names:
        x, y = ref[n]
        alone = getattr(model, n)(x)
        norm = float(y.double().norm()) or 1.0
        rows.append(
            dict(
                name=n,
                output_error=float((got[n][1].double() - y.double()).norm()) / norm,
                stage_alone_error=float((alone.double() - y.double()).norm()) / norm,
            )
        )
    return rows


def calibration_batch(
    images: Optional[str] = None, num_images: int = 8, img_size: int = 224, seed: int = 0, in_channels: int = 3
) -> Tuple[Tensor, dict]:
    """Inputs ``(N, C, img_size, img_size)`` for BN calibration and the output errors, and their description.

    ``images=None``: standard normal noise (the statistics of normalised images). Otherwise the first
    ``num_images`` images (sorted by name) of the folder ``images``, resized to ``img_size`` x ``img_size``, RGB,
    normalised with the ImageNet mean/std of mmdet and torchvision.

    Raises:
        ValueError: bad ``num_images``/``img_size``; FileNotFoundError: no such folder or no image in it.
    """
    check_int('num_images', num_images, low=1)
    check_int('img_size', img_size, low=16)
    if images is None:
        x = torch.randn(num_images, in_channels, img_size, img_size, generator=torch.Generator().manual_seed(seed))
        return x, dict(kind='random normal', num_images=num_images, img_size=img_size, seed=seed)
    if not osp.isdir(images):
        raise FileNotFoundError(f'image folder {images!r} does not exist')
    files = sorted(f for f in glob.glob(osp.join(images, '*')) if f.lower().endswith(_IMAGE_EXTS))[:num_images]
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(_IMAGE_EXTS)}) in {images!r}')
    if in_channels != 3:
        raise ValueError(f'images are RGB but the target has in_channels={in_channels}')
    import mmcv

    mean, std = torch.tensor(_IMAGENET_MEAN).view(3, 1, 1), torch.tensor(_IMAGENET_STD).view(3, 1, 1)
    batch = []
    for f in files:
        img = mmcv.imread(f, channel_order='rgb')
        if img is None:
            raise ValueError(f'cannot read the image {f!r}')
        img = mmcv.imresize(img, (img_size, img_size))
        batch.append((torch.from_numpy(img).permute(2, 0, 1).float() - mean) / std)
    return torch.stack(batch), dict(kind='images', folder=str(images), num_images=len(files), img_size=img_size)
