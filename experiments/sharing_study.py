"""What sharing costs and what the regulariser buys: a grid of detector trainings, cells x seeds.

    python -m experiments.sharing_study [--grid shapes] [--cells r18 r18-s16u1 ...] [--seeds 0 1 2] [--epochs 8]
        [--val-interval E] [--jobs 1] [--threads T] [--out-dir docs/results/sharing_study] [--dry-run]
        [--summary-only] [--doc [PAGE]] [--doc-marker NAME] [--cfg-options k=v ...]

Every run trains one cell of the grid (:data:`experiments.grids.GRIDS`; the shapes grid: the project's shapes
configs, identical neck, heads, data and schedule) as an ordinary config run (:func:`experiments.common.run_config`:
the seed, the regulariser kept or removed, and for the whole grid alike the schedule, ``--val-interval`` and any
``--cfg-options``), each in a fresh interpreter, so runs cannot influence each other.

Per run the CSV records: backbone and detector parameters, the grid's metrics on the validation split (and the main
metric of every validation), wall time, final task loss (mean over the last epoch) and peak task loss (max
per-iteration task loss after the LR warm-up), and the bases' statistics recorded by ``BasisStatsHook`` every
``--sv-every`` iterations: the weighted ``loss_orth`` when the regulariser is on, and for every run the unweighted
``L_orth``, ``max |B B^T - I|`` and the extreme singular values of each basis. A row is appended as soon as a run
finishes; runs already in the CSV are skipped on a restart, and a run whose process died (the end of a sitting)
continues from the latest checkpoint in its work dir, exactly as if it had not stopped. The summary prints mean and
standard deviation (over seeds) per cell and the study's comparisons (:mod:`experiments.stats`: mean difference
with its 95 % Welch interval, Hedges' g, raw and Holm-adjusted p over the table's comparisons, the reading the
adjusted p allows), writes
``summary_<E>e.md`` and the PNG ``sharing_study_<E>e.png`` (the main metric against backbone parameters, error bars
= one std, one marker per backbone, filled = regulariser on), one pair per schedule of E epochs (runs with extra
``--cfg-options``, e.g. recipe checks sharing an out-dir: ``summary_<E>e_<H>.md``, H = 8 hex digits of the options'
SHA-1, the options named in its first line, so that checks never overwrite each other's summaries); ``--doc`` fills
the block ``sharing-study-<E>e`` of ``docs/studies/sharing.md`` (or of PAGE) likewise.
"""

import argparse
import hashlib
import json
import os
import os.path as osp
import statistics
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import List, Optional, Sequence, Tuple

from experiments import common, grids, stats
from experiments.grids import Cell, Grid

DOC = 'docs/studies/sharing.md'
HEAD = ['cell', 'backbone', 'regularizer', 'seed', 'epochs', 'iters', 'backbone_params', 'detector_params']
TAIL = [
    'wall_s',
    'task_loss_final',
    'task_loss_peak',
    'loss_orth_final',
    'l_orth_final',
    'l_orth_max',
    'orth_max_err_final',
    'sigma_min',
    'sigma_max',
    'sigma_spread_final',
    'val_curve',
    'threads',
    'jobs',
    'cpu',
    'options',
]


def fields(grid: Grid) -> List[str]:
    """The CSV columns of a grid: the run, the grid's metrics, the losses and the bases' statistics."""
    return HEAD + list(grid.metrics) + TAIL


# ------------------------------------------------------------------------------------------------ one run
def run_spec(args, seed: int, work_dir: str, sv_every: int, **extra) -> dict:
    """What a run of the grid needs from a study's command line (``args``: epochs, val_interval, cfg_options, jobs)."""
    return dict(
        seed=seed,
        epochs=args.epochs,
        val_interval=args.val_interval,
        work_dir=work_dir,
        cfg_options=args.cfg_options,
        sv_every=sv_every,
        jobs=args.jobs,
        **extra,
    )


def run_row(grid: Grid, cell: Cell, spec: dict, threads: int) -> dict:
    """Train one run of the grid (a fresh ``tools/train.py`` process) and return its CSV row; a run interrupted
    earlier (its work dir holds a checkpoint) continues from its latest checkpoint."""
    cfg = common.run_config(
        cell,
        spec['seed'],
        spec['epochs'],
        spec['val_interval'],
        spec['work_dir'],
        spec['cfg_options'],
        spec.get('init_checkpoint'),
        dict(interval=spec['sv_every']),
        grid.checkpoint_every,
    )
    resume = common.can_resume(spec['work_dir'])
    if resume:
        print(f'  resuming {cell.key} seed {spec["seed"]} from its checkpoint in {spec["work_dir"]}', flush=True)
    common.train(cfg, threads, osp.join(spec['work_dir'], 'study_run.log'), resume=resume)
    return row_of(grid, cell, cfg, common.read_run(spec['work_dir']), spec, threads)


def row_of(grid: Grid, cell: Cell, cfg, run: common.RunRecord, spec: dict, threads: int) -> dict:
    """The CSV row of a finished run of ``cell`` trained with ``cfg``."""
    epochs = cfg.train_cfg.max_epochs
    last = run.validations[-1] if run.validations else {}
    task = run.task_losses()
    bases = run.bases()
    groups = [b['groups'] for b in bases]
    spreads = [(g['sigma_min'], g['sigma_max']) for g in groups[-1]] if groups else []
    backbone_params, detector_params = common.parameters(cfg)
    return dict(
        cell=cell.key,
        backbone=cell.label,
        regularizer=int(cell.regularizer),
        seed=spec['seed'],
        epochs=epochs,
        iters=run.iters,
        backbone_params=backbone_params,
        detector_params=detector_params,
        **{column: float(last[key]) for column, key in grid.metrics.items()},
        wall_s=run.wall_s,
        task_loss_final=statistics.fmean(task[-(run.iters // epochs) :]),
        task_loss_peak=max(task[common.warmup_iters(cfg) :] or task),
        loss_orth_final=(run.losses('loss_orth') or [''])[-1],
        l_orth_final=bases[-1]['l_orth'] if bases else '',
        l_orth_max=max(b['l_orth'] for b in bases) if bases else '',
        orth_max_err_final=bases[-1]['orth_max_err'] if bases else '',
        sigma_min=min(g['sigma_min'] for row in groups for g in row) if groups else '',
        sigma_max=max(g['sigma_max'] for row in groups for g in row) if groups else '',
        sigma_spread_final=max(hi / max(lo, 1e-12) for lo, hi in spreads) if spreads else '',
        val_curve=json.dumps(run.curve(grid.metrics[grid.main], epochs)),
        threads=threads,
        jobs=spec['jobs'],
        cpu=common.cpu_model(),
        options=json.dumps(spec['cfg_options']),
    )


# ------------------------------------------------------------------------------------------------ summary
def summarize(grid: Grid, rows: List[dict]) -> str:
    """Markdown table: one line per cell, mean ± sample std over its seeds; then the comparisons."""
    main, others = grid.main, [m for m in grid.metrics if m != grid.main]
    labels = grid.metric_labels
    lines = [
        f'| backbone | regulariser | seeds | backbone params | {labels[main]} | per seed | '
        + ''.join(f'{labels[m]} | ' for m in others)
        + 'final task loss | peak task loss | L_orth (end) | σmax/σmin (end) | wall min |',
        '|---|---|---|---|---|---|' + '---|' * len(others) + '---|---|---|---|---|',
    ]
    for cell in grid.cells:
        sel = [r for r in rows if r['cell'] == cell.key]
        if not sel:
            continue

        def col(name, sel=sel):
            return [float(r[name]) for r in sel if r[name] not in ('', None)]

        spread = col('sigma_spread_final')
        per_seed = ', '.join(f'{float(r[main]):.3f} (s{r["seed"]})' for r in sorted(sel, key=lambda r: int(r['seed'])))
        lines.append(
            f'| {cell.label} | {"on" if cell.regularizer else "off"} | {len(sel)} | '
            f'{int(sel[0]["backbone_params"]) / 1e6:.2f} M | {common.mean_std(col(main))} | {per_seed} | '
            + ''.join(f'{common.mean_std(col(m))} | ' for m in others)
            + f'{common.mean_std(col("task_loss_final"))} | {common.mean_std(col("task_loss_peak"))} | '
            + (f'{statistics.fmean(col("l_orth_final")):.2e} | ' if col('l_orth_final') else '- | ')
            + (f'{statistics.fmean(spread):.3f} | ' if spread else '- | ')
            + f'{statistics.fmean(col("wall_s")) / 60:.1f} |'
        )
    lines += machines(rows)
    comparisons = compare(grid, rows)
    own = compare(grid, rows, grid.own_comparisons)
    if own:
        own = ['', "Variants of ours against the paper's (a Holm family of its own):", '', *own]
    return '\n'.join(lines + (['', *comparisons] if comparisons else []) + own)


def machines(rows: List[dict]) -> List[str]:
    """A line under the table naming the processors the runs' wall times were measured on (the ``cpu`` column), with
    how many runs each; nothing for a CSV that does not record them."""
    if not any(r.get('cpu') for r in rows):
        return []
    count = Counter(r.get('cpu') or 'not recorded' for r in rows)
    names = '; '.join(f'{cpu}: {n} run{"s" * (n != 1)}' for cpu, n in sorted(count.items()))
    return ['', f'Wall times (minutes of training, mean over the seeds) were measured on: {names}.']


def _last_validations(row: dict, n: int = 4) -> str:
    """The last ``n`` validations of a run with their epochs, e.g. ``0.820 (e39), 0.822 (e42)``: whether a run ended
    on a plateau or still rising."""
    curve = [c for c in json.loads(row.get('val_curve') or '[]') if c[2] == c[2]]  # drop NaN (no metric)
    return ', '.join(f'{m:.3f} (e{e})' for e, _, m in curve[-n:]) or '-'


def schedule_check(grid: Grid, rows: List[dict], others: List[dict]) -> str:
    """Runs of the same cell and seed with other schedules: does the chosen one leave accuracy on the table?

    One line per other run: its final main metric, that of the study's run of the same cell and seed, the
    difference, and the last validations of both runs (a run that ends still rising has not converged)."""
    main, cells, lines = grid.main, grid.by_key, []
    for r in sorted(others, key=lambda r: (r['cell'], int(r['seed']), int(r['epochs']))):
        same = [q for q in rows if q['cell'] == r['cell'] and q['seed'] == r['seed']]
        if same:
            lines.append(
                f'| {cells[r["cell"]].label}{reg_label(cells[r["cell"]])}, seed {r["seed"]} | '
                f'{r["epochs"]} epochs: {float(r[main]):.3f} | {same[0]["epochs"]} epochs: '
                f'{float(same[0][main]):.3f} | {float(r[main]) - float(same[0][main]):+.3f} | '
                f'{_last_validations(r)} | {_last_validations(same[0])} |'
            )
    if not lines:
        return ''
    return '\n\n' + '\n'.join(
        [
            '| schedule check | other schedule | this study | difference | last validations, other | '
            'last validations, this study |',
            '|---|---|---|---|---|---|',
            *lines,
        ]
    )


def compare(grid: Grid, rows: List[dict], comparisons: Optional[Sequence[Tuple[str, str, str]]] = None) -> List[str]:
    """The table of the grid's comparisons (:func:`experiments.stats.comparison_table`): per comparison the mean
    difference with its 95 % Welch interval, Hedges' g, Welch's t and p, p Holm-adjusted over the comparisons of
    this table, and the reading the adjusted p allows. Generated, so that no number is typed by hand.
    ``comparisons``: another family than the grid's main one (e.g. ``grid.own_comparisons``)."""
    cells, metric, out = grid.by_key, grid.main, []
    for cell, ref, what in grid.comparisons if comparisons is None else comparisons:
        name = f'{cells[cell].label}{reg_label(cells[cell])}'
        out.append(
            (
                f'{what}: {cell} vs {ref}',
                [float(r[metric]) for r in rows if r['cell'] == cell],
                [float(r[metric]) for r in rows if r['cell'] == ref],
                f'{name} is better',
                f'{name} is worse',
            )
        )
    return stats.comparison_table(out, metric=grid.metric_labels[metric])


def reg_label(cell: Cell) -> str:
    if 'S' not in cell.label:  # a plain backbone: no bases to regularise
        return ''
    return ' + reg.' if cell.regularizer else ' no reg.'


MARKERS = ('o', 's', 'D', '^', 'v', '<', '>', 'p', 'h')


def plot(grid: Grid, rows: List[dict], path: str, epochs: int) -> None:
    """The main metric against backbone parameters, error bars = one std over seeds; filled = regulariser on."""
    plt = common.pyplot()
    labels = list(dict.fromkeys(c.label for c in grid.cells))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cell in grid.cells:
        sel = [r for r in rows if r['cell'] == cell.key]
        if not sel:
            continue
        values = [float(r[grid.main]) for r in sel]
        shared = 'S' in cell.label
        x = int(sel[0]['backbone_params']) / 1e6 * (1.02 if not cell.regularizer and shared else 1.0)
        ax.errorbar(
            x,
            statistics.fmean(values),
            yerr=statistics.stdev(values) if len(values) > 1 else 0.0,
            marker=MARKERS[labels.index(cell.label) % len(MARKERS)],
            markersize=8,
            capsize=4,
            linestyle='none',
            mfc=None if cell.regularizer or not shared else 'white',
            label=f'{cell.label}{reg_label(cell)} (n={len(values)})',
        )
    ax.set_xlabel('backbone parameters (M)')
    ax.set_ylabel(grid.axis)
    ax.set_title(grid.title.format(epochs=epochs), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ command line
def parse_args(argv=None) -> argparse.Namespace:
    from mmbasis.utils.docs import add_doc_option, block_problem, doc_target

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--grid', choices=list(grids.GRIDS), default='shapes', help='the dataset (default shapes)')
    parser.add_argument('--cells', nargs='+', metavar='CELL', help='grid cells (default: all of the grid)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, help="epochs of every run (default: the configs')")
    parser.add_argument('--val-interval', type=int, help='validate every E epochs (default: at the end only)')
    parser.add_argument('--jobs', type=int, default=1, help='runs at a time (default 1)')
    parser.add_argument('--threads', type=int, help='torch threads per run (default: cores / jobs)')
    parser.add_argument('--sv-every', type=int, default=20, help="record the bases' statistics every N iterations")
    parser.add_argument(
        '--dataset',
        default='default',
        help='a data variant of the grid (shapes: default, or hard: 6 classes, small/occluded objects, clutter); '
        'applied to every run as --cfg-options, so results of the two never mix',
    )
    parser.add_argument('--out-dir', help="CSV, summaries and plots (default docs/results/<the grid's folder>)")
    parser.add_argument('--dry-run', action='store_true', help='list the runs (and which are done) and exit')
    parser.add_argument('--summary-only', action='store_true', help='summarise the CSV without training')
    add_doc_option(parser, DOC, 'the summary table')
    parser.add_argument('--doc-marker', '--readme-marker', dest='marker', help='the block (default sharing-study-<E>e)')
    parser.add_argument('--work-root', help="where the runs' work dirs go (default work_dirs/<the grid's folder>)")
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE', help='overrides of every run')
    args = parser.parse_args(argv)
    grid = args.grid = grids.GRIDS[args.grid]
    args.out_dir = args.out_dir or osp.join('docs', 'results', grid.results)
    args.work_root = args.work_root or osp.join('work_dirs', grid.results)
    if args.dataset not in grid.variants:
        parser.error(f'--dataset {args.dataset!r}: the {grid.name} grid has {", ".join(grid.variants)}')
    args.cfg_options = grid.variants[args.dataset] + args.cfg_options
    args.cells = args.cells or [c.key for c in grid.cells]
    unknown = [c for c in args.cells if c not in grid.by_key]
    if unknown or not args.cells:
        parser.error(f'unknown cells {unknown}; choose from {", ".join(grid.by_key) or "(none yet)"}')
    for name in ('epochs', 'val_interval', 'jobs', 'threads', 'sv_every'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} {value} must be >= 1')
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds {args.seeds}: give distinct non-negative integers')
    args.doc = doc_target(args)
    if args.doc == DOC:  # `--doc` alone: the grid's page
        args.doc = grid.page
    if args.doc:
        args.marker = args.marker or f'sharing-study-{args.epochs or grid.epochs}e'
        problem = block_problem(args.doc, args.marker)
        if problem:
            parser.error(f'{problem}; add that block or choose another with --doc-marker')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    grid = args.grid
    csv_path = osp.join(args.out_dir, 'runs.csv')
    options = json.dumps(args.cfg_options)
    common.parse_options(args.cfg_options)  # a malformed option fails here, before any run
    epochs = args.epochs if args.epochs is not None else grid.epochs
    done = {common.run_key(r['cell'], r['seed'], r['epochs'], r['options']) for r in common.read_rows(csv_path)}
    runs = [(c, s) for c in args.cells for s in args.seeds]
    pending = [(c, s) for c, s in runs if common.run_key(c, s, epochs, options) not in done]
    print(
        f'sharing study: {len(runs)} runs ({len(args.cells)} cells x {len(args.seeds)} seeds, {epochs} epochs), '
        f'{len(runs) - len(pending)} already in {csv_path}, {len(pending)} to run'
    )
    if args.dry_run or args.summary_only:
        for c, s in runs:
            cell = grid.by_key[c]
            state = 'pending' if (c, s) in pending else 'done'
            print(f'  {c:<22} seed {s}  {cell.config}  regulariser {"on" if cell.regularizer else "off"}  [{state}]')
    if not (args.dry_run or args.summary_only) and pending:
        os.makedirs(args.out_dir, exist_ok=True)
        threads = args.threads or common.default_threads(args.jobs)

        def one(run):
            cell, seed = run
            work = osp.join(args.work_root, common.run_dir(cell, seed, epochs, args.dataset))
            now = {common.run_key(r['cell'], r['seed'], r['epochs'], r['options']) for r in common.read_rows(csv_path)}
            if common.run_key(cell, seed, epochs, options) in now or not common.claim(work):
                print(f'  skipped: {cell} seed {seed} is done or running in another process', flush=True)
                return
            row = run_row(grid, grid.by_key[cell], run_spec(args, seed, work, args.sv_every), threads)
            row['epochs'] = epochs
            common.append_row(csv_path, row, fields(grid))
            print(f'  done: {cell} seed {seed}: {grid.main} {row[grid.main]:.3f} in {row["wall_s"] / 60:.1f} min')

        failed = []
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # a failed run stops neither the others nor the rest
            futures = {pool.submit(one, run): run for run in pending}
            for future in as_completed(futures):
                if future.exception() is not None:
                    cell, seed = futures[future]
                    failed.append(f'{cell} seed {seed}')
                    print(f'  FAILED: {cell} seed {seed}: {future.exception()!r}', flush=True)
        if failed:
            write_summary(args, csv_path, options, epochs, argv)
            print(f'{len(failed)} run(s) failed: {", ".join(failed)}; their logs are in {args.work_root}')
            return 1
    if args.dry_run:
        return 0
    return write_summary(args, csv_path, options, epochs, argv)


def summary_name(args, options: str, epochs: int) -> str:
    """``<E>e`` for runs with the grid's own options (those of ``--dataset``); ``<E>e_<H>`` for runs with extra
    ``--cfg-options`` (H: 8 hex digits of the SHA-1 of their JSON list), so that runs with other options written to
    the same out-dir (recipe checks) get summaries and PNGs of their own instead of overwriting each other's."""
    if options == json.dumps(args.grid.variants[args.dataset]):
        return f'{epochs}e'
    return f'{epochs}e_{hashlib.sha1(options.encode()).hexdigest()[:8]}'


def write_summary(args, csv_path: str, options: str, epochs: int, argv: Optional[List[str]] = None) -> int:
    """The summary of the CSV's runs of this schedule and options: printed, ``summary_<name>.md`` (name:
    :func:`summary_name`), the PNG and the doc block."""
    grid = args.grid
    rows = [r for r in common.read_rows(csv_path) if str(r['epochs']) == str(epochs) and r['options'] == options]
    if not rows:
        print(f'no finished runs in {csv_path} yet')
        return 0
    others = [r for r in common.read_rows(csv_path) if str(r['epochs']) != str(epochs) and r['options'] == options]
    table = summarize(grid, rows) + schedule_check(grid, rows, others)
    name = summary_name(args, options, epochs)
    if name != f'{epochs}e':
        extra = ' '.join(json.loads(options)[len(grid.variants[args.dataset]) :])
        table = f'Runs with `--cfg-options {extra}`:\n\n' + table
    print(table)
    os.makedirs(args.out_dir, exist_ok=True)
    summary_path = osp.join(args.out_dir, f'summary_{name}.md')
    png_path = osp.join(args.out_dir, f'sharing_study_{name}.png')
    with open(summary_path, 'w', encoding='utf-8') as f:
        f.write(table + '\n')
    plot(grid, rows, png_path, epochs)
    print(f'wrote {summary_path} and {png_path}')
    if args.doc:
        common.write_doc(args.doc, args.marker, table, common.command('-m experiments.sharing_study', argv))
    return 0


if __name__ == '__main__':
    sys.exit(main())
