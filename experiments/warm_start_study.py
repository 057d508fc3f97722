"""Warm start vs. from scratch: decompose trained plain detectors' backbones into shared bases and fine-tune.

    python -m experiments.warm_start_study [--pairs r34:r34-s48u1star r18:r18-s16u1] [--seeds 0 1 2]
        [--from-epoch 12] [--epochs 12] [--val-interval 3] [--jobs 1] [--threads T]
        [--study-csv docs/results/sharing_study/runs.csv] [--study-work-root work_dirs/sharing_study]
        [--out-dir docs/results/warm_start] [--dry-run] [--summary-only] [--doc [PAGE]]

It needs the runs of ``experiments.sharing_study`` (same ``--study-*`` settings): for each pair ``PLAIN:SHARED`` of
grid cells and each seed, the plain detector's checkpoint at ``--from-epoch`` (kept by the study) has its backbone
decomposed into the shared cell's backbone (``mmbasis.decompose.decompose_checkpoint``, calibrated on training
images), and the shared cell's config is fine-tuned for ``--epochs`` from that backbone (neck and heads start
fresh, as they would from ImageNet weights), validating every ``--val-interval`` epochs: an ordinary config run of
the shared cell (:func:`experiments.common.run_config`, the decomposed backbone as its ``Pretrained`` weights).
Total training =
``from_epoch + epochs`` epochs, compared with the same shared detector trained from scratch for that many epochs
in the study (the study's validation curve gives the iterations each needs to reach a given mAP).
Results: ``runs.csv`` (a row per run, skipped on restart), ``summary.md`` and ``warm_start.png`` (mAP against
total training iterations: plain, scratch and warm start; mean over seeds, band = min..max); ``--doc`` fills the block
``warm-start`` of ``docs/studies/warm_start.md`` (or of PAGE).
"""

import argparse
import json
import os
import os.path as osp
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

from experiments import common, grids
from experiments import sharing_study as study

GRID = grids.SHAPES
CELLS = GRID.by_key
DOC = 'docs/studies/warm_start.md'
FIELDS = study.fields(GRID) + ['source', 'weight_error', 'stage_errors']


def decompose(plain_ckpt: str, shared_cell: str, dst: str, images: str, options: List[str]) -> dict:
    """Decompose the plain detector's backbone into the shared cell's backbone; the conversion's ``meta``."""
    import mmbasis  # noqa: F401
    from mmbasis.decompose import decompose_checkpoint
    from mmbasis.utils.cli import read_config

    cfg = read_config(osp.join(common.REPO, 'configs', CELLS[shared_cell].config), common.parse_options(options))
    backbone = {k: v for k, v in cfg.model.backbone.items() if k != 'init_cfg'}
    return decompose_checkpoint(plain_ckpt, dst, backbone_cfg=backbone, images=images, num_images=16, img_size=160)


def _iters_to_reach(curve: List[list], target: float, offset: int = 0) -> Optional[int]:
    """First validated total iteration whose mAP reaches ``target`` (``offset`` added), else None."""
    return next((offset + it for _, it, m in curve if m >= target), None)


def summarize(
    study_rows: List[dict],
    rows: List[dict],
    pairs: List[Tuple[str, str]],
    total_epochs: int,
    from_epoch: int,
    iters_per_epoch: int,
) -> str:
    lines = [
        '| backbone | start | training | seeds | bbox mAP | mAP@0.5 | iterations to reach 90 % of the '
        'scratch mAP | decomposition error (weights / last stage) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for plain, shared in pairs:
        scratch = [r for r in study_rows if r['cell'] == shared and int(r['epochs']) == total_epochs]
        base = [r for r in study_rows if r['cell'] == plain and int(r['epochs']) == total_epochs]
        warm = [r for r in rows if r['cell'] == f'{shared}-warm']
        if not scratch or not warm:
            continue
        target = 0.9 * statistics.fmean(float(r['bbox_mAP']) for r in scratch)
        name = CELLS[shared].label

        def reach(sel, offset=0, target=target):
            its = [_iters_to_reach(json.loads(r['val_curve']), target, offset) for r in sel]
            hit = [i for i in its if i is not None]
            return f'{statistics.fmean(hit):.0f} ({len(hit)}/{len(its)} runs)' if hit else f'not reached (0/{len(its)})'

        def maps(sel, key):
            return common.mean_std([float(r[key]) for r in sel])

        offset = from_epoch * iters_per_epoch
        errs = [(float(r['weight_error']), json.loads(r['stage_errors'])[-1]) for r in warm]
        lines += [
            f'| {CELLS[plain].label} (plain) | scratch | {total_epochs} epochs | {len(base)} | '
            f'{maps(base, "bbox_mAP")} | {maps(base, "bbox_mAP_50")} | {reach(base)} | - |',
            f'| {name} | scratch | {total_epochs} epochs | {len(scratch)} | {maps(scratch, "bbox_mAP")} | '
            f'{maps(scratch, "bbox_mAP_50")} | {reach(scratch)} | - |',
            f'| {name} | decomposed plain (epoch {from_epoch}) | {from_epoch} plain + {total_epochs - from_epoch} '
            f'epochs | {len(warm)} | {maps(warm, "bbox_mAP")} | {maps(warm, "bbox_mAP_50")} | {reach(warm, offset)} | '
            f'{statistics.fmean(e[0] for e in errs):.3f} / {statistics.fmean(e[1] for e in errs):.3f} |',
        ]
    return '\n'.join(lines)


def _band(curves: List[List[list]], offset: int):
    by_it: Dict[int, List[float]] = {}
    for curve in curves:
        for _, it, m in curve:
            by_it.setdefault(offset + it, []).append(m)
    its = sorted(by_it)
    return its, [statistics.fmean(by_it[i]) for i in its], [min(by_it[i]) for i in its], [max(by_it[i]) for i in its]


def plot(study_rows, rows, pairs, total_epochs: int, from_epoch: int, iters_per_epoch: int, path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4), squeeze=False)
    for ax, (plain, shared) in zip(axes[0], pairs):
        series = [
            (
                CELLS[plain].label + ' (plain), scratch',
                'tab:gray',
                [r for r in study_rows if r['cell'] == plain and int(r['epochs']) == total_epochs],
                0,
            ),
            (
                CELLS[shared].label + ', scratch',
                'tab:red',
                [r for r in study_rows if r['cell'] == shared and int(r['epochs']) == total_epochs],
                0,
            ),
            (
                CELLS[shared].label + ', warm start',
                'tab:blue',
                [r for r in rows if r['cell'] == f'{shared}-warm'],
                from_epoch * iters_per_epoch,
            ),
        ]
        for label, color, sel, offset in series:
            if not sel:
                continue
            its, mean, lo, hi = _band([json.loads(r['val_curve']) for r in sel], offset)
            ax.plot(its, mean, marker='o', ms=3, color=color, label=f'{label} (n={len(sel)})')
            ax.fill_between(its, lo, hi, color=color, alpha=0.2, lw=0)
        ax.axvline(from_epoch * iters_per_epoch, color='k', lw=0.8, ls=':')
        ax.set_xlabel('total training iterations (plain + fine-tune for the warm start)')
        ax.set_ylabel('COCO bbox mAP (shapes val)')
        ax.set_title(f'{CELLS[shared].label}: decomposed at the dotted line', fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    from mmbasis.utils.docs import add_doc_option, block_problem, doc_target

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pairs', nargs='+', default=['r34:r34-s48u1star', 'r18:r18-s16u1'], metavar='PLAIN:SHARED')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--from-epoch', type=int, default=12, help='plain checkpoint epoch to decompose (default 12)')
    parser.add_argument('--epochs', type=int, default=12, help='fine-tuning epochs (default 12)')
    parser.add_argument('--val-interval', type=int, default=3)
    parser.add_argument('--jobs', type=int, default=1)
    parser.add_argument('--threads', type=int)
    parser.add_argument('--study-csv', default=osp.join('docs', 'results', 'sharing_study', 'runs.csv'))
    parser.add_argument('--study-work-root', default=osp.join('work_dirs', 'sharing_study'))
    parser.add_argument('--work-root', default=osp.join('work_dirs', 'warm_start'))
    parser.add_argument('--out-dir', default=osp.join('docs', 'results', 'warm_start'))
    parser.add_argument(
        '--images',
        default=None,
        help='calibration images of the decomposition (default: the shapes training images)',
    )
    parser.add_argument(
        '--dataset', choices=list(GRID.variants), default='default', help='as for experiments.sharing_study'
    )
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    parser.add_argument('--dry-run', action='store_true')
    parser.add_argument('--summary-only', action='store_true')
    add_doc_option(parser, DOC, 'the summary table (block warm-start)')
    args = parser.parse_args(argv)
    pairs = []
    for p in args.pairs:
        plain, _, shared = p.partition(':')
        if plain not in CELLS or shared not in CELLS or not CELLS[shared].regularizer:
            parser.error(
                f'--pairs {p!r}: give PLAIN:SHARED grid cells of experiments.sharing_study, the shared one with the '
                f'regulariser; cells: {", ".join(CELLS)}'
            )
        pairs.append((plain, shared))
    args.pairs = pairs
    args.cfg_options = GRID.variants[args.dataset] + args.cfg_options
    if args.images is None:
        folder = 'shapes' if args.dataset == 'default' else f'shapes_{args.dataset}'
        args.images = osp.join(common.REPO, 'data', folder, 'train', 'images')
    for name in ('from_epoch', 'epochs', 'val_interval', 'jobs'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    args.doc = doc_target(args)
    problem = args.doc and block_problem(args.doc, 'warm-start')
    if problem:
        parser.error(problem)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    total = args.from_epoch + args.epochs
    csv_path = osp.join(args.out_dir, 'runs.csv')
    options = json.dumps(args.cfg_options)
    done = {(r['cell'], r['seed']) for r in common.read_rows(csv_path) if r['options'] == options}
    runs = [(p, s) for p in args.pairs for s in args.seeds]
    pending = [(p, s) for p, s in runs if (f'{p[1]}-warm', str(s)) not in done]
    print(f'warm-start study: {len(runs)} runs, {len(runs) - len(pending)} done, {len(pending)} to run')
    for (plain, shared), seed in runs:
        src = osp.join(
            args.study_work_root, common.run_dir(plain, seed, total, args.dataset), f'epoch_{args.from_epoch}.pth'
        )
        state = 'pending' if ((plain, shared), seed) in pending else 'done'
        print(f'  {plain} -> {shared} seed {seed}: {src} [{state}{"" if osp.isfile(src) else ", source missing"}]')
    if args.dry_run:
        return 0
    missing = [
        osp.join(args.study_work_root, common.run_dir(p, s, total, args.dataset), f'epoch_{args.from_epoch}.pth')
        for (p, _), s in pending
    ]
    missing = [m for m in missing if not osp.isfile(m)]
    if not args.summary_only and missing:
        print(
            f'error: {len(missing)} plain checkpoint(s) to decompose do not exist, e.g. {missing[0]}; run the plain '
            f'cells first: python -m experiments.sharing_study --epochs {total} --cells '
            f'{" ".join(sorted({p for (p, _), _s in pending}))} (or point --study-work-root at their work dirs)',
            file=sys.stderr,
        )
        return 1
    if not args.summary_only and pending:
        os.makedirs(args.out_dir, exist_ok=True)
        threads = args.threads or common.default_threads(args.jobs)

        def one(run):
            (plain, shared), seed = run
            src = osp.join(
                args.study_work_root, common.run_dir(plain, seed, total, args.dataset), f'epoch_{args.from_epoch}.pth'
            )
            work = osp.join(args.work_root, common.run_dir(f'{shared}-warm', seed, args.epochs, args.dataset))
            dst = osp.join(work, 'decomposed_backbone.pth')
            meta = decompose(src, shared, dst, args.images, args.cfg_options)
            spec = study.run_spec(args, seed, work, 20, init_checkpoint=osp.abspath(dst))
            row = study.run_row(GRID, CELLS[shared], spec, threads)
            row.update(
                cell=f'{shared}-warm',
                epochs=args.epochs,
                source=osp.relpath(src, args.study_work_root),  # the plain run's checkpoint, machine-independent
                weight_error=meta['report']['overall']['weight_error'],
                stage_errors=json.dumps([s['output_error'] for s in meta['report']['stages']]),
            )
            common.append_row(csv_path, row, FIELDS)
            print(f'  done: {shared} warm seed {seed}: bbox_mAP {float(row["bbox_mAP"]):.3f}', flush=True)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, pending))
    study_rows = common.read_rows(args.study_csv)
    rows = [r for r in common.read_rows(csv_path) if r['options'] == options]
    if not rows:
        print('no finished warm-start runs yet')
        return 0
    iters_per_epoch = int(rows[0]['iters']) // args.epochs
    table = summarize(study_rows, rows, args.pairs, total, args.from_epoch, iters_per_epoch)
    print(table)
    with open(osp.join(args.out_dir, 'summary.md'), 'w', encoding='utf-8') as f:
        f.write(table + '\n')
    plot(
        study_rows, rows, args.pairs, total, args.from_epoch, iters_per_epoch, osp.join(args.out_dir, 'warm_start.png')
    )
    if args.doc:
        common.write_doc(args.doc, 'warm-start', table, common.command('-m experiments.warm_start_study', argv))
    return 0


if __name__ == '__main__':
    sys.exit(main())
