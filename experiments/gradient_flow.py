"""Gradient flow through the shared bases, with and without the orthogonality regulariser (paper Sec. 3.3).

    python -m experiments.gradient_flow CONFIG [--iters 30] [--seeds 0 1 2] [--loss-weight 10] [--threads T]
                                        [--out-dir DIR] [--cfg-options k=v ...]

For every seed, trains the config's detector twice for ``--iters`` iterations from the same start (same initial
weights and batches: the same seed, and neither the regulariser nor the recording draws random numbers): once with
``OrthogonalityRegularizerHook`` (``--loss-weight``) and once without. Each is an ordinary config run
(``tools/train.py`` in a fresh interpreter) of the config with an iteration loop, no validation, no checkpoints, the
optimizer's base learning rate (no schedulers: an analysis of the first iterations, not a training run) and
``BasisStatsHook(interval=1)``, which records after each backward pass, for every shared basis group, the Frobenius
norm, mean and max of its gradient, and the singular-value spread (sigma_min, sigma_max) of the basis matrix.

Writes ``gradient_flow.csv`` (a row per seed, condition, iteration and basis group; sigma of the weights the
iteration starts from, gradient and losses of its backward pass), ``gradient_flow.png`` (one column per basis:
gradient norm and sigma_max/sigma_min over the iterations, mean over seeds with the min-max band) and
``summary.md`` (the table printed at the end, with the command). A condition whose loss becomes non-finite stops
there (``FiniteLossHook``), recorded as such.
"""

import argparse
import csv
import os
import os.path as osp
import sys
from typing import Dict, List

from experiments import common

HOOK = 'OrthogonalityRegularizerHook'
CONDITIONS = ('with', 'without')
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


def condition_config(config: str, options: dict, condition: str, seed: int, iters: int, loss_weight: float, work_dir):
    """The config of one condition: the regulariser kept (``loss_weight``) or removed, ``iters`` iterations at the
    base learning rate, no validation, no checkpoints, ``BasisStatsHook`` recording every iteration."""
    from mmbasis.utils.cli import read_config

    cfg = read_config(config, options)
    reg = next((h for h in cfg.get('custom_hooks', []) if h.get('type') == HOOK), dict(type=HOOK))
    hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != HOOK]
    if condition == 'with':
        hooks.append(dict(reg, loss_weight=loss_weight))
    cfg.custom_hooks = hooks + [dict(type=common.STATS_HOOK, interval=1, record_losses=True)]
    cfg.randomness = dict(seed=seed)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.param_scheduler = None
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = work_dir
    return cfg


def rows_of(records: List[dict], seed: int, condition: str) -> List[dict]:
    """CSV rows of one condition: for iteration ``i`` the bases' singular values before its step (the record of
    ``i`` iterations done) and the gradients and losses of its backward pass (the record of ``i + 1``)."""
    by_iter = {r['iter']: r for r in records if 'l_orth' in r or 'losses' in r}
    rows = []
    for i in range(max(by_iter, default=0)):
        before, during = by_iter.get(i), by_iter.get(i + 1)
        if before is None or during is None or 'groups' not in during:
            break
        losses = during['losses']
        for g0, g1 in zip(before['groups'], during['groups']):
            rows.append(
                dict(
                    seed=seed,
                    condition=condition,
                    iter=i,
                    basis=g1['name'],
                    uses=g1['uses'],
                    grad_norm=g1.get('grad_norm', 0.0),
                    grad_mean=g1.get('grad_mean', 0.0),
                    grad_max=g1.get('grad_max', 0.0),
                    sigma_min=g0['sigma_min'],
                    sigma_max=g0['sigma_max'],
                    loss=losses['loss'],
                    loss_orth=losses.get('loss_orth', 0.0),
                )
            )
    return rows


def _band(rows, basis: str, cond: str, key):
    """(iterations, mean over seeds, min, max) of ``key(row)`` for one basis and condition."""
    by_iter: Dict[int, List[float]] = {}
    for r in rows:
        if r['basis'] == basis and r['condition'] == cond:
            by_iter.setdefault(r['iter'], []).append(key(r))
    its = sorted(by_iter)
    vals = [by_iter[i] for i in its]
    return its, [sum(v) / len(v) for v in vals], [min(v) for v in vals], [max(v) for v in vals]


def plot(rows, path: str) -> None:
    plt = common.pyplot()
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


def summary(rows, seeds, iters: int) -> str:
    """Per basis and condition: the mean gradient norm over the second half, sigma_max/sigma_min at the end, and the
    iterations run."""
    half = iters // 2
    lines = [f'{"basis":<44} {"uses":>4} {"cond":<8} {"||grad|| 2nd half":>17} {"s_max/s_min end":>16} {"iters":>6}']
    for basis in dict.fromkeys(r['basis'] for r in rows):
        for cond in CONDITIONS:
            sel = [r for r in rows if r['basis'] == basis and r['condition'] == cond]
            late = [r['grad_norm'] for r in sel if r['iter'] >= half] or [float('nan')]
            ends = [
                max((r for r in sel if r['seed'] == s), key=lambda r: r['iter'])
                for s in seeds
                if any(r['seed'] == s for r in sel)
            ]
            spread = sum(r['sigma_max'] / max(r['sigma_min'], 1e-12) for r in ends) / max(1, len(ends))
            lines.append(
                f'{basis:<44} {sel[0]["uses"] if sel else 0:>4} {cond:<8} {sum(late) / len(late):>17.3e} '
                f'{spread:>16.3f} {min(r["iter"] for r in ends) + 1 if ends else 0:>6}'
            )
    return '\n'.join(lines)


def main(argv=None) -> int:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--loss-weight', type=float, default=10.0, help='lambda of the regulariser (paper: 10)')
    parser.add_argument('--threads', type=int, help='torch threads of each run (default: the cores)')
    parser.add_argument('--out-dir', help='default: work_dirs/gradient_flow/<config name>')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if args.iters < 1:
        raise SystemExit(f'error: --iters {args.iters} must be >= 1')
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file {args.config!r} does not exist')
    out_dir = args.out_dir or osp.join('work_dirs', 'gradient_flow', osp.splitext(osp.basename(args.config))[0])
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for condition in CONDITIONS:
            work = osp.abspath(osp.join(out_dir, 'runs', f'seed{seed}_{condition}'))
            cfg = condition_config(
                args.config, args.cfg_options or {}, condition, seed, args.iters, args.loss_weight, work
            )
            code = common.train(cfg, args.threads or common.default_threads(1), osp.join(work, 'run.log'), False)
            records = common.read_run_records(work)
            if not any('groups' in r and r['groups'] for r in records):
                raise SystemExit(f'error: the backbone of {args.config} has no shared bases to analyse (see {work})')
            got = rows_of(records, seed, condition)
            rows += got
            if code != 0:
                print(f'seed {seed}, {condition} the regulariser: the run stopped after {len(got)} rows (see {work})')
    csv_path, png_path = osp.join(out_dir, 'gradient_flow.csv'), osp.join(out_dir, 'gradient_flow.png')
    with open(csv_path + '.tmp', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(csv_path + '.tmp', csv_path)
    plot(rows, png_path)
    table = summary(rows, args.seeds, args.iters)
    print(table)
    cmd = common.command('-m experiments.gradient_flow', argv)
    with open(osp.join(out_dir, 'summary.md'), 'w', encoding='utf-8') as f:
        f.write(f'Command: {cmd}\n\n```\n{table}\n```\n')
    print(f'wrote {csv_path}, {png_path} and summary.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
