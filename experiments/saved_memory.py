"""Bytes a training step stores for its backward pass: paper backbones against ResNet-34, with and without
``recompute_basis_norm`` (the normalised basis responses recomputed in the backward pass).

    python -m experiments.saved_memory [--batch 2] [--size 320] [--models 'ResNet34-S48U1*' 'ResNet34-S16U1*']
        [--time REPS] [--threads 2]

Counted exactly with ``torch.autograd.graph.saved_tensors_hooks`` (each distinct stored tensor once), so the
numbers do not depend on the machine's load or allocator; BatchNorms in training mode (``norm_eval=False``, as in
the from-scratch configs). Peak memory of a whole step is measured by the speed benchmark. ``--time REPS`` also
times the training step (with the orthogonality regulariser, as configured) with and without the recomputation,
interleaved with ResNet-34's (on a quiet machine only).
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
    parser.add_argument('--time', type=int, default=0, metavar='REPS', help='also time the training steps')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch chooses)')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
    models = {}
    for arch in args.models:
        for recompute in (False, True):
            torch.manual_seed(0)
            model = SharedBasisResNet(arch=arch, norm_eval=False, recompute_basis_norm=recompute).train()
            models[arch, recompute] = model
            mib = saved_mib(model, x)
            print(f'| {arch} | {recompute} | {mib:.1f} | {mib / base:.3f}x |')
    if args.time:
        print_times(models, plain, x, args.time)
    return 0


def print_times(models: dict, plain: torch.nn.Module, x: torch.Tensor, reps: int) -> None:
    """Training steps (the regulariser as configured on ours) of each model with and without the recomputation and
    of ResNet-34, interleaved: medians and ratios with the range of the per-repetition ratios."""
    from mmbasis.analysis.backbones import regulariser_for, train_step_fn
    from mmbasis.analysis.timing import summarize_times, time_interleaved

    print(f'\ntraining step, {torch.get_num_threads()} threads, {reps} interleaved repetitions after 2 warm-up')
    print(
        '| backbone | off ms | on ms | on / off [range] | off / ResNet-34 | on / ResNet-34 |\n|---|---|---|---|---|---|'
    )
    for arch in dict.fromkeys(a for a, _ in models):
        off, on = models[arch, False], models[arch, True]
        fns = [train_step_fn(m, x, regulariser_for(m)) for m in (off, on)] + [train_step_fn(plain, x)]
        t_off, t_on, t_plain = time_interleaved(fns, reps, 2, torch.device('cpu'))
        s = summarize_times(t_on, t_off)
        p_off, p_on = summarize_times(t_off, t_plain), summarize_times(t_on, t_plain)
        print(
            f'| {arch} | {s["theirs_ms"]:.1f} | {s["ours_ms"]:.1f} | {s["ratio"]:.3f}x [{s["lo"]:.2f}, {s["hi"]:.2f}] '
            f'| {p_off["ratio"]:.2f}x | {p_on["ratio"]:.2f}x |'
        )


if __name__ == '__main__':
    sys.exit(main())
