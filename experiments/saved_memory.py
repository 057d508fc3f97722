"""Bytes a training step stores for its backward pass: paper backbones against ResNet-34, with and without
``recompute_basis_norm`` (the normalised basis responses recomputed in the backward pass).

    python -m experiments.saved_memory [--batch 2] [--size 320] [--models 'ResNet34-S48U1*' 'ResNet34-S16U1*']

Counted exactly with ``torch.autograd.graph.saved_tensors_hooks`` (each distinct stored tensor once), so the
numbers do not depend on the machine's load or allocator; BatchNorms in training mode (``norm_eval=False``, as in
the from-scratch configs). Peak memory of a whole step is measured by the speed benchmark.
"""

import argparse
import sys
from typing import List, Optional

import torch


def saved_mib(model: torch.nn.Module, x: torch.Tensor) -> float:
    """MiB of the distinct tensors autograd stores while ``model(x)`` runs."""
    seen = {}

    def pack(t):
        seen[(t.data_ptr(), tuple(t.shape), t.dtype)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values()) / 2**20


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--models', nargs='+', default=['ResNet34-S48U1*', 'ResNet34-S16U1*'])
    args = parser.parse_args(argv)
    from mmdet.models.backbones import ResNet

    from mmbasis.models import SharedBasisResNet

    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    plain = ResNet(34, norm_eval=False)
    plain.train()
    base = saved_mib(plain, x)
    print(f'batch {args.batch}, input {args.size}x{args.size}, BatchNorms in training mode, torch {torch.__version__}')
    print('\n| backbone | recompute_basis_norm | stored for backward (MiB) | / ResNet-34 |\n|---|---|---|---|')
    print(f'| ResNet-34 | - | {base:.1f} | 1.000x |')
    for arch in args.models:
        for recompute in (False, True):
            model = SharedBasisResNet(arch=arch, norm_eval=False, recompute_basis_norm=recompute).train()
            mib = saved_mib(model, x)
            print(f'| {arch} | {recompute} | {mib:.1f} | {mib / base:.3f}x |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
