"""Gradient flow through the shared bases, with and without the orthogonality regulariser (paper Sec. 3.3).

    python tools/analysis_tools/gradient_flow.py CONFIG [--iters 30] [--seed 0] [--loss-weight 10]
                                                 [--out-dir DIR] [--cfg-options k=v ...]

Trains the config's detector twice for ``--iters`` iterations from the same seed (same initial weights and
the same batches): once with ``OrthogonalityRegularizerHook`` and once without. After each backward pass
(before the optimizer step) it records, for every shared basis group, the mean and max |gradient| and the
singular-value spread (sigma_min, sigma_max) of the basis matrix. Writes ``gradient_flow.csv`` and
``gradient_flow.png`` to the output dir and prints a summary. The learning rate is the optimizer's base lr
(schedulers are not stepped): this is an analysis of the first iterations, not a training run.
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
FIELDS = ['condition', 'iter', 'basis', 'grad_mean', 'grad_max', 'sigma_min', 'sigma_max', 'loss', 'loss_orth']


def run_condition(cfg, condition: str, iters: int, seed: int, loss_weight: float):
    set_random_seed(seed, deterministic=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    groups = model.backbone.basis_groups() if hasattr(model.backbone, 'basis_groups') else []
    groups = [g for g in groups if any(p.requires_grad for _, p in g.shared)]  # frozen stages: nothing to see
    if not groups:
        raise SystemExit(f'error: the backbone {type(model.backbone).__name__} has no trainable shared bases '
                         'to analyse')
    if condition == 'with':
        hook_cfg = next((h for h in cfg.get('custom_hooks', []) if h.get('type') == HOOK), dict(type=HOOK))
        HOOKS.build(dict(hook_cfg, loss_weight=loss_weight)).before_train(SimpleNamespace(model=model))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    rows, it = [], 0
    while it < iters:
        for batch in loader:
            with optim.optim_context(model):
                data = model.data_preprocessor(batch, True)
                losses = model._run_forward(data, mode='loss')
            loss, log_vars = model.parse_losses(losses)
            optim.backward(loss)
            loss_orth = log_vars['loss_orth'].item() if 'loss_orth' in log_vars else 0.
            for g in groups:
                grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                                   for _, p in g.shared]).abs()
                lo, hi = singular_value_spread(g)
                rows.append(dict(condition=condition, iter=it, basis=g.name, grad_mean=float(grads.mean()),
                                 grad_max=float(grads.max()), sigma_min=lo, sigma_max=hi, loss=loss.item(),
                                 loss_orth=loss_orth))
            optim.step()
            optim.zero_grad()
            it += 1
            if it >= iters:
                break
    return rows


def plot(rows, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    bases = sorted({r['basis'] for r in rows}, key=lambda b: [r['basis'] for r in rows].index(b))
    fig, axes = plt.subplots(2, len(bases), figsize=(4 * len(bases), 6.5), squeeze=False)
    for j, basis in enumerate(bases):
        for cond, style in (('with', '-'), ('without', '--')):
            sel = [r for r in rows if r['basis'] == basis and r['condition'] == cond]
            x = [r['iter'] for r in sel]
            axes[0][j].plot(x, [r['grad_mean'] for r in sel], style, label=f'mean |grad|, {cond} reg.')
            axes[0][j].plot(x, [r['grad_max'] for r in sel], style, alpha=0.4, label=f'max |grad|, {cond} reg.')
            axes[1][j].plot(x, [r['sigma_max'] / max(r['sigma_min'], 1e-12) for r in sel], style,
                            label=f'{cond} regulariser')
        axes[0][j].set_title(basis, fontsize=8)
        axes[0][j].set_yscale('log')
        axes[1][j].set_xlabel('iteration')
    axes[0][0].set_ylabel('|gradient| of the shared basis')
    axes[1][0].set_ylabel('sigma_max / sigma_min of the basis')
    axes[0][0].legend(fontsize=6)
    axes[1][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--seed', type=int, default=0)
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
    for condition in ('with', 'without'):
        rows += run_condition(cfg, condition, args.iters, args.seed, args.loss_weight)
    csv_path, png_path = osp.join(out_dir, 'gradient_flow.csv'), osp.join(out_dir, 'gradient_flow.png')
    with open(csv_path + '.tmp', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(csv_path + '.tmp', csv_path)
    plot(rows, png_path)
    print(f'{"basis":<40} {"cond":<8} {"mean|g| (avg)":>14} {"max|g| (avg)":>13} {"s_max/s_min last":>17}')
    for basis in dict.fromkeys(r['basis'] for r in rows):
        for cond in ('with', 'without'):
            sel = [r for r in rows if r['basis'] == basis and r['condition'] == cond]
            print(f'{basis:<40} {cond:<8} {sum(r["grad_mean"] for r in sel) / len(sel):>14.3e} '
                  f'{sum(r["grad_max"] for r in sel) / len(sel):>13.3e} '
                  f'{sel[-1]["sigma_max"] / max(sel[-1]["sigma_min"], 1e-12):>17.3f}')
    print(f'wrote {csv_path} and {png_path}')


if __name__ == '__main__':
    main()
