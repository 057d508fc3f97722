"""Gradient flow through the shared bases, with and without the orthogonality regulariser (paper Sec. 3.3).

    python tools/analysis_tools/gradient_flow.py CONFIG [--iters 30] [--seeds 0 1 2] [--loss-weight 10]
                                                 [--out-dir DIR] [--cfg-options k=v ...]

For every seed, trains the config's detector twice for ``--iters`` iterations from the same start (same
initial weights and batches): once with ``OrthogonalityRegularizerHook`` and once without. After each backward
pass (before the optimizer step) it records, for every shared basis group, the Frobenius norm, mean and max of
its gradient, and the singular-value spread (sigma_min, sigma_max) of the basis matrix. Writes
``gradient_flow.csv`` and ``gradient_flow.png`` (one column per basis: gradient norm and sigma_max/sigma_min over
the iterations, mean over seeds with the min-max band) and prints a summary. The learning rate is the
optimizer's base lr (schedulers are not stepped): this is an analysis of the first iterations, not a training
run. A condition whose loss becomes non-finite stops there (recorded as such).
"""

import argparse
import csv
import os
import os.path as osp
from types import SimpleNamespace

import torch
from mmdet.registry import HOOKS, MODELS
from mmengine.config import DictAction
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, set_random_seed

import mmbasis  # noqa: F401
from mmbasis.models import singular_value_spread
from mmbasis.utils.cli import load_config

HOOK = 'OrthogonalityRegularizerHook'
FIELDS = [
    'seed',
    'condition',
    'iter',
    'basis',
    'uses',
    'grad_norm',
    'grad_mean',
    'grad_max',
    'sigma_min',
    'sigma_max',
    'loss',
    'loss_orth',
]


def run_condition(cfg, condition: str, iters: int, seed: int, loss_weight: float):
    set_random_seed(seed, deterministic=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    groups = model.backbone.basis_groups() if hasattr(model.backbone, 'basis_groups') else []
    groups = [g for g in groups if any(p.requires_grad for _, p in g.shared)]  # frozen stages: nothing to see
    if not groups:
        raise SystemExit(
            f'error: the backbone {type(model.backbone).__name__} has no trainable shared bases to analyse'
        )
    if condition == 'with':
        hook_cfg = next((h for h in cfg.get('custom_hooks', []) if h.get('type') == HOOK), dict(type=HOOK))
        HOOKS.build(dict(hook_cfg, loss_weight=loss_weight)).before_train(SimpleNamespace(model=model))
    uses = {g.name: _uses(model.backbone, g) for g in groups}
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    rows, it = [], 0
    while it < iters:
        for batch in loader:
            with optim.optim_context(model):
                data = model.data_preprocessor(batch, True)
                losses = model._run_forward(data, mode='loss')
            loss, log_vars = model.parse_losses(losses)
            if not torch.isfinite(loss):
                print(
                    f'seed {seed}, {condition} the regulariser: the loss is {loss.item()} at iteration {it}; '
                    'this condition stops here'
                )
                return rows
            optim.backward(loss)
            loss_orth = log_vars['loss_orth'].item() if 'loss_orth' in log_vars else 0.0
            for g in groups:
                grads = torch.cat(
                    [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for _, p in g.shared]
                )
                lo, hi = singular_value_spread(g)
                rows.append(
                    dict(
                        seed=seed,
                        condition=condition,
                        iter=it,
                        basis=g.name,
                        uses=uses[g.name],
                        grad_norm=float(grads.norm()),
                        grad_mean=float(grads.abs().mean()),
                        grad_max=float(grads.abs().max()),
                        sigma_min=lo,
                        sigma_max=hi,
                        loss=loss.item(),
                        loss_orth=loss_orth,
                    )
                )
            optim.step()
            optim.zero_grad()
            it += 1
            if it >= iters:
                break
    return rows


def _uses(backbone, group) -> int:
    """How many convolutions use the group's shared bases (the depth of the recursion)."""
    from mmbasis.models.layers import BasisConv2d

    ids = {id(p) for _, p in group.shared}
    return sum(isinstance(m, BasisConv2d) and id(m.shared_basis) in ids for m in backbone.modules())


def _band(rows, basis: str, cond: str, key):
    """(iterations, mean over seeds, min, max) of ``key(row)`` for one basis and condition."""
    by_iter = {}
    for r in rows:
        if r['basis'] == basis and r['condition'] == cond:
            by_iter.setdefault(r['iter'], []).append(key(r))
    its = sorted(by_iter)
    vals = [by_iter[i] for i in its]
    return its, [sum(v) / len(v) for v in vals], [min(v) for v in vals], [max(v) for v in vals]


def plot(rows, path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    bases = list(dict.fromkeys(r['basis'] for r in rows))
    seeds = sorted({r['seed'] for r in rows})
    fig, axes = plt.subplots(2, len(bases), figsize=(3.6 * len(bases), 6.2), squeeze=False)
    for j, basis in enumerate(bases):
        uses = next(r['uses'] for r in rows if r['basis'] == basis)
        for cond, color in (('with', 'tab:blue'), ('without', 'tab:red')):
            for row, key in ((0, lambda r: r['grad_norm']), (1, lambda r: r['sigma_max'] / max(r['sigma_min'], 1e-12))):
                its, mean, lo, hi = _band(rows, basis, cond, key)
                if not its:
                    continue
                axes[row][j].plot(its, mean, color=color, lw=1, label=f'{cond} regulariser')
                axes[row][j].fill_between(its, lo, hi, color=color, alpha=0.2, lw=0)
        axes[0][j].set_title(f'{basis.split("+")[0]}\n(used by {uses} convs)', fontsize=8)
        axes[0][j].set_yscale('log')
        axes[1][j].set_yscale('log')
        axes[1][j].set_xlabel('iteration')
    axes[0][0].set_ylabel('||gradient|| of the shared basis')
    axes[1][0].set_ylabel('sigma_max / sigma_min of the basis')
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f'mean over seeds {seeds}, band = min..max', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--loss-weight', type=float, default=10.0, help='lambda of the regulariser (paper: 10)')
    parser.add_argument('--out-dir', help='default: work_dirs/gradient_flow/<config name>')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if args.iters < 1:
        raise SystemExit(f'error: --iters {args.iters} must be >= 1')
    cfg = load_config(args.config, args.cfg_options, None, 'none')
    out_dir = args.out_dir or osp.join('work_dirs', 'gradient_flow', osp.splitext(osp.basename(args.config))[0])
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for condition in ('with', 'without'):
            rows += run_condition(cfg, condition, args.iters, seed, args.loss_weight)
    csv_path, png_path = osp.join(out_dir, 'gradient_flow.csv'), osp.join(out_dir, 'gradient_flow.png')
    with open(csv_path + '.tmp', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(csv_path + '.tmp', csv_path)
    plot(rows, png_path)
    half = args.iters // 2
    print(f'{"basis":<44} {"uses":>4} {"cond":<8} {"||grad|| 2nd half":>17} {"s_max/s_min end":>16} {"iters":>6}')
    for basis in dict.fromkeys(r['basis'] for r in rows):
        for cond in ('with', 'without'):
            sel = [r for r in rows if r['basis'] == basis and r['condition'] == cond]
            late = [r['grad_norm'] for r in sel if r['iter'] >= half] or [float('nan')]
            ends = [
                max((r for r in sel if r['seed'] == s), key=lambda r: r['iter'])
                for s in args.seeds
                if any(r['seed'] == s for r in sel)
            ]
            spread = sum(r['sigma_max'] / max(r['sigma_min'], 1e-12) for r in ends) / max(1, len(ends))
            print(
                f'{basis:<44} {sel[0]["uses"] if sel else 0:>4} {cond:<8} {sum(late) / len(late):>17.3e} '
                f'{spread:>16.3f} {min(r["iter"] for r in ends) + 1 if ends else 0:>6}'
            )
    print(f'wrote {csv_path} and {png_path}')


if __name__ == '__main__':
    main()
