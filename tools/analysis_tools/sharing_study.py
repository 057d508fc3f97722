"""What sharing costs and what the regulariser buys: a grid of detector trainings on the generated shapes data.

    python tools/analysis_tools/sharing_study.py [--cells r18 r18-s16u1 ...] [--seeds 0 1 2] [--epochs 8]
        [--val-interval E] [--jobs 1] [--threads T] [--out-dir docs/results/sharing_study] [--dry-run]
        [--summary-only] [--readme README.md] [--cfg-options k=v ...]

Every run trains one of the project's shapes configs (configs/shapes/, identical neck, heads, data and
schedule) through an mmengine Runner, overridden only by what the grid varies: the seed (``randomness.seed``),
the regulariser (``OrthogonalityRegularizerHook`` kept or removed), and, for the whole grid alike, the schedule
(``--epochs``: max_epochs, the LR step at 3/4 of it, ``--val-interval``) and any ``--cfg-options``. Each run is
a fresh interpreter (``--worker``), so runs cannot influence each other.

Per run the CSV records: backbone and detector parameters, COCO bbox mAP / mAP@0.5 / mAP@0.75 on the
validation split (and the mAP of every validation), wall time, final task loss (mean over the last epoch) and
peak task loss (max per-iteration task loss after the LR warm-up), and the regulariser's statistics: the
weighted ``loss_orth`` when the regulariser is on, and for every run the unweighted ``L_orth`` and
``max |B B^T - I|`` of the shared bases and the extreme singular values of each basis, sampled during training.
A row is appended as soon as a run finishes; runs already in the CSV are skipped on a restart. The summary
prints mean and standard deviation (over seeds) per cell and the study's comparisons (``study_stats.py``: mean
difference with its 95 % Welch interval, Hedges' g, raw and Holm-adjusted p over the table's comparisons, the
reading the adjusted p allows), writes ``summary_<E>e.md`` and the PNG
``sharing_study_<E>e.png`` (mAP against backbone parameters, error bars = one std, one marker per backbone,
filled = regulariser on), one pair per schedule of E epochs, so grids of different schedules can be shown
side by side; ``--readme`` fills the README block ``sharing-study-<E>e`` likewise.
"""

import argparse
import csv
import importlib.util
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    'mmbasis_study_stats', osp.join(osp.dirname(osp.abspath(__file__)), 'study_stats.py')
)
stats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stats)
REG_HOOK = 'OrthogonalityRegularizerHook'


@dataclass(frozen=True)
class Cell:
    """A grid cell: a shapes config, with or without the regulariser."""

    key: str
    backbone: str
    config: str
    regularizer: bool


CELLS = {
    c.key: c
    for c in (
        Cell('r18', 'ResNet-18', 'shapes/faster-rcnn_r18_slim-fpn_scratch-8e_shapes.py', False),
        Cell('r18-s16u1', 'ResNet-18 S16U1', 'shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py', True),
        Cell('r18-s16u1-noreg', 'ResNet-18 S16U1', 'shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py', False),
        Cell('r34', 'ResNet-34', 'shapes/faster-rcnn_r34_slim-fpn_scratch-8e_shapes.py', False),
        Cell(
            'r34-s48u1star', 'ResNet34-S48U1*', 'shapes/faster-rcnn_r34-s48u1star_slim-fpn_scratch-8e_shapes.py', True
        ),
        Cell(
            'r34-s48u1star-noreg',
            'ResNet34-S48U1*',
            'shapes/faster-rcnn_r34-s48u1star_slim-fpn_scratch-8e_shapes.py',
            False,
        ),
        Cell(
            'r34-s16u1star', 'ResNet34-S16U1*', 'shapes/faster-rcnn_r34-s16u1star_slim-fpn_scratch-8e_shapes.py', True
        ),
    )
}

#: ``--dataset``: overrides of every run for a data variant (mmbasis.datasets.shapes, ``variant``).
DATASETS = {
    'default': [],
    'hard': [
        f'{loader}.dataset.{key}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        for key in ('variant=hard', 'max_objects=10', 'data_root=data/shapes_hard/')
    ]
    + [
        'val_evaluator.ann_file=data/shapes_hard/val/annotation.json',
        'test_evaluator.ann_file=data/shapes_hard/val/annotation.json',
        'model.roi_head.bbox_head.num_classes=6',
    ],
}

FIELDS = [
    'cell',
    'backbone',
    'regularizer',
    'seed',
    'epochs',
    'iters',
    'backbone_params',
    'detector_params',
    'bbox_mAP',
    'bbox_mAP_50',
    'bbox_mAP_75',
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
    'options',
]


# ------------------------------------------------------------------------------------------------ one run
def parse_options(options: List[str]) -> dict:
    """``--cfg-options`` strings (``key=value``) parsed as mmengine's tools parse them."""
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(['--cfg-options', *options]).cfg_options if options else {}


def study_config(
    cell: Cell,
    seed: int,
    epochs: Optional[int],
    val_interval: Optional[int],
    work_dir: str,
    options: List[str],
    init_checkpoint: Optional[str] = None,
):
    """The cell's config with exactly the grid's overrides applied (``options``: ``key=value`` strings).

    ``init_checkpoint``: start the backbone from this checkpoint (``Pretrained`` init_cfg; the warm-start study).
    """
    from mmbasis.utils.cli import read_config

    cfg = read_config(osp.join(REPO, 'configs', cell.config), parse_options(options))
    cfg.randomness = dict(seed=seed)
    hooks = [h for h in cfg.get('custom_hooks', []) if cell.regularizer or h.get('type') != REG_HOOK]
    if cell.regularizer and not any(h.get('type') == REG_HOOK for h in hooks):
        raise ValueError(f'{cell.config} has no {REG_HOOK} to keep')
    cfg.custom_hooks = hooks
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        for sched in cfg.param_scheduler:
            if sched.get('type') == 'MultiStepLR':
                sched.update(end=epochs, milestones=[max(1, round(0.75 * epochs))])
    cfg.train_cfg.val_interval = val_interval or cfg.train_cfg.max_epochs
    # the mid-schedule checkpoint is kept too: the warm-start study decomposes the plain detectors at half time
    cfg.default_hooks.checkpoint = dict(
        type='SafeCheckpointHook', interval=max(1, cfg.train_cfg.max_epochs // 2), max_keep_ckpts=2
    )
    if init_checkpoint is not None:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=init_checkpoint)
    cfg.work_dir = work_dir
    return cfg


def _recorder(sv_every: int):
    """A hook collecting the per-run statistics (built inside the worker, after mmengine is imported)."""
    import torch
    from mmengine.hooks import Hook
    from mmengine.model import is_model_wrapper

    from mmbasis.models.losses import orthogonality_loss, singular_value_spread

    class StudyRecorder(Hook):
        priority = 'LOWEST'

        def __init__(self):
            self.task_loss, self.loss_orth, self.l_orth, self.max_err, self.sigmas, self.curve = [], [], [], [], [], []
            self.metrics = {}

        def _groups(self, runner):
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            return getattr(model.backbone, 'basis_groups', list)()

        def _sample(self, runner):
            groups = self._groups(runner)
            if not groups:
                return
            with torch.no_grad():
                loss, err = orthogonality_loss(groups)
            self.l_orth.append(float(loss))
            self.max_err.append(float(err))
            self.sigmas.append([singular_value_spread(g) for g in groups])

        def before_train(self, runner):
            self._sample(runner)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            outputs = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in (outputs or {}).items()}
            self.task_loss.append(outputs['loss'] - outputs.get('loss_orth', 0.0))
            if 'loss_orth' in outputs:
                self.loss_orth.append(outputs['loss_orth'])
            if (runner.iter + 1) % sv_every == 0:
                self._sample(runner)

        def after_val_epoch(self, runner, metrics=None):
            self.metrics = dict(metrics or {})
            self.curve.append([runner.epoch, runner.iter, float(self.metrics.get('coco/bbox_mAP', float('nan')))])

    return StudyRecorder()


def run_worker(spec: dict) -> dict:
    """Train one run of the grid in this process and return its CSV row (see the module docstring)."""
    import torch
    from mmengine.runner import Runner

    import mmbasis  # noqa: F401  (registers modules)

    cell = CELLS[spec['cell']]
    cfg = study_config(
        cell,
        spec['seed'],
        spec['epochs'],
        spec['val_interval'],
        spec['work_dir'],
        spec['cfg_options'],
        spec.get('init_checkpoint'),
    )
    runner = Runner.from_cfg(cfg)
    recorder = _recorder(sv_every=spec['sv_every'])
    runner.register_hook(recorder)
    t0 = time.time()
    runner.train()
    wall = time.time() - t0
    model = runner.model
    last = {k: float(recorder.metrics[f'coco/{k}']) for k in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')}
    iters_per_epoch = len(runner.train_dataloader)
    warmup = max(s.get('end', 0) for s in cfg.param_scheduler if not s.get('by_epoch', True))
    spreads = recorder.sigmas[-1] if recorder.sigmas else []
    return dict(
        cell=cell.key,
        backbone=cell.backbone,
        regularizer=int(cell.regularizer),
        seed=spec['seed'],
        epochs=cfg.train_cfg.max_epochs,
        iters=runner.iter,
        backbone_params=sum(p.numel() for p in model.backbone.parameters()),
        detector_params=sum(p.numel() for p in model.parameters()),
        **last,
        wall_s=round(wall, 1),
        task_loss_final=statistics.fmean(recorder.task_loss[-iters_per_epoch:]),
        task_loss_peak=max(recorder.task_loss[warmup:] or recorder.task_loss),
        loss_orth_final=recorder.loss_orth[-1] if recorder.loss_orth else '',
        l_orth_final=recorder.l_orth[-1] if recorder.l_orth else '',
        l_orth_max=max(recorder.l_orth) if recorder.l_orth else '',
        orth_max_err_final=recorder.max_err[-1] if recorder.max_err else '',
        sigma_min=min(lo for row in recorder.sigmas for lo, _ in row) if recorder.sigmas else '',
        sigma_max=max(hi for row in recorder.sigmas for _, hi in row) if recorder.sigmas else '',
        sigma_spread_final=max(hi / max(lo, 1e-12) for lo, hi in spreads) if spreads else '',
        val_curve=json.dumps(recorder.curve),
        threads=torch.get_num_threads(),
        jobs=spec['jobs'],
        options=json.dumps(spec['cfg_options']),
    )


# ------------------------------------------------------------------------------------------------ the grid
def read_rows(path: str) -> List[dict]:
    if not osp.isfile(path):
        return []
    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def append_row(path: str, row: dict, fields: List[str] = FIELDS) -> None:
    """Append one row (header first if the file is new), flushed to disk before returning."""
    new = not osp.isfile(path)
    with open(path, 'a', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, '') for k in fields})
        f.flush()
        os.fsync(f.fileno())


def run_key(cell: str, seed: int, epochs, options: str) -> tuple:
    return cell, int(seed), str(epochs), options


def run_dir(cell: str, seed: int, epochs, dataset: str = 'default') -> str:
    """The work-dir name of a run (the warm-start study finds the plain runs' checkpoints by it)."""
    return f'{cell}_seed{seed}_{epochs}e' + ('' if dataset == 'default' else f'_{dataset}')


def claim(work_dir: str) -> bool:
    """Claim a run for this process (``work_dir/claim``, created exclusively), so that several study processes
    can share a grid; a claim whose process has died is taken over."""
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, 'claim')
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path, encoding='utf-8') as f:
                    pid = int(f.read().strip() or 0)
                os.kill(pid, 0)
                return pid == os.getpid()  # alive: another process owns it
            except (ValueError, ProcessLookupError, FileNotFoundError):
                try:
                    os.remove(path)  # a dead process's claim
                except FileNotFoundError:
                    pass
                continue
        with os.fdopen(fd, 'w') as f:
            f.write(str(os.getpid()))
        return True
    return False


def launch(spec: dict, threads: int, log_path: str) -> dict:
    """Run one grid point in a fresh interpreter; return its row (raises with the log's tail on failure)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS='ignore')
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    with open(log_path, 'w', encoding='utf-8') as log:
        proc = subprocess.run(
            [sys.executable, osp.abspath(__file__), '--worker', json.dumps(spec)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    with open(log_path, encoding='utf-8') as log:
        lines = log.read().splitlines()
    result = next((ln[len('RESULT ') :] for ln in reversed(lines) if ln.startswith('RESULT ')), None)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(
            f'run {spec["cell"]} seed {spec["seed"]} failed (exit {proc.returncode}); last lines of '
            f'{log_path}:\n' + '\n'.join(lines[-15:])
        )
    return json.loads(result)


# ------------------------------------------------------------------------------------------------ summary
def _mean_std(values: List[float]) -> str:
    if not values:
        return '-'
    if len(values) == 1:
        return f'{values[0]:.3f}'
    return f'{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}'


def summarize(rows: List[dict]) -> str:
    """Markdown table: one line per cell, mean ± sample std over its seeds."""
    lines = [
        '| backbone | regulariser | seeds | backbone params | bbox mAP | per seed | mAP@0.5 | mAP@0.75 | '
        'final task loss | peak task loss | L_orth (end) | σmax/σmin (end) | wall min |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for key, cell in CELLS.items():
        sel = [r for r in rows if r['cell'] == key]
        if not sel:
            continue

        def col(name, sel=sel):
            return [float(r[name]) for r in sel if r[name] not in ('', None)]

        params = int(sel[0]['backbone_params'])
        spread = col('sigma_spread_final')
        per_seed = ', '.join(
            f'{float(r["bbox_mAP"]):.3f} (s{r["seed"]})' for r in sorted(sel, key=lambda r: int(r['seed']))
        )
        lines.append(
            f'| {cell.backbone} | {"on" if cell.regularizer else "off"} | {len(sel)} | {params / 1e6:.2f} M | '
            f'{_mean_std(col("bbox_mAP"))} | {per_seed} | {_mean_std(col("bbox_mAP_50"))} | '
            f'{_mean_std(col("bbox_mAP_75"))} | '
            f'{_mean_std(col("task_loss_final"))} | {_mean_std(col("task_loss_peak"))} | '
            + (f'{statistics.fmean(col("l_orth_final")):.2e} | ' if col('l_orth_final') else '- | ')
            + (f'{statistics.fmean(spread):.3f} | ' if spread else '- | ')
            + f'{statistics.fmean(col("wall_s")) / 60:.1f} |'
        )
    comparisons = compare(rows)
    return '\n'.join(lines + (['', *comparisons] if comparisons else []))


def _last_validations(row: dict, n: int = 4) -> str:
    """The last ``n`` validation mAPs of a run with their epochs, e.g. ``0.820 (e39), 0.822 (e42)``: whether a
    run ended on a plateau or still rising."""
    curve = [c for c in json.loads(row.get('val_curve') or '[]') if c[2] == c[2]]  # drop NaN (no metric)
    return ', '.join(f'{m:.3f} (e{e})' for e, _, m in curve[-n:]) or '-'


def schedule_check(rows: List[dict], others: List[dict]) -> str:
    """Runs of the same cell and seed with other schedules: does the chosen one leave accuracy on the table?

    One line per other run: its final mAP, that of the study's run of the same cell and seed, the difference,
    and the last validations of both runs (a run that ends still rising has not converged)."""
    lines = []
    for r in sorted(others, key=lambda r: (r['cell'], int(r['seed']), int(r['epochs']))):
        same = [q for q in rows if q['cell'] == r['cell'] and q['seed'] == r['seed']]
        if same:
            lines.append(
                f'| {CELLS[r["cell"]].backbone}{_reg_label(CELLS[r["cell"]])}, seed {r["seed"]} | '
                f'{r["epochs"]} epochs: {float(r["bbox_mAP"]):.3f} | {same[0]["epochs"]} epochs: '
                f'{float(same[0]["bbox_mAP"]):.3f} | {float(r["bbox_mAP"]) - float(same[0]["bbox_mAP"]):+.3f} | '
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


#: The comparisons the study is about: (cell, reference cell, question).
COMPARISONS = (
    ('r18-s16u1', 'r18', 'sharing, ResNet-18'),
    ('r34-s48u1star', 'r34', 'sharing, ResNet-34 (S48U1*)'),
    ('r34-s16u1star', 'r34', 'sharing, ResNet-34 (S16U1*)'),
    ('r18-s16u1', 'r18-s16u1-noreg', 'the regulariser, ResNet-18 S16U1'),
    ('r34-s48u1star', 'r34-s48u1star-noreg', 'the regulariser, ResNet34-S48U1*'),
)


def compare(rows: List[dict], metric: str = 'bbox_mAP') -> List[str]:
    """The table of :data:`COMPARISONS` (``study_stats.comparison_table``): per comparison the mean difference with
    its 95 % Welch interval, Hedges' g, Welch's t and p, p Holm-adjusted over the comparisons of this table, and
    the reading the adjusted p allows. Generated, so that no number is typed by hand."""
    comparisons = []
    for cell, ref, what in COMPARISONS:
        name = f'{CELLS[cell].backbone}{_reg_label(CELLS[cell])}'
        comparisons.append(
            (
                f'{what}: {CELLS[cell].key} vs {CELLS[ref].key}',
                [float(r[metric]) for r in rows if r['cell'] == cell],
                [float(r[metric]) for r in rows if r['cell'] == ref],
                f'{name} is better',
                f'{name} is worse',
            )
        )
    return stats.comparison_table(comparisons)


def _reg_label(cell: Cell) -> str:
    if 'S' not in cell.backbone:  # a plain backbone: no bases to regularise
        return ''
    return ' + reg.' if cell.regularizer else ' no reg.'


def plot(rows: List[dict], path: str, epochs: int) -> None:
    """mAP against backbone parameters, error bars = one std over seeds; filled markers = regulariser on."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    markers = {
        'ResNet-18': 'o',
        'ResNet-18 S16U1': 's',
        'ResNet-34': 'D',
        'ResNet34-S48U1*': '^',
        'ResNet34-S16U1*': 'v',
    }
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, cell in CELLS.items():
        sel = [r for r in rows if r['cell'] == key]
        if not sel:
            continue
        maps = [float(r['bbox_mAP']) for r in sel]
        x = int(sel[0]['backbone_params']) / 1e6 * (1.02 if not cell.regularizer and 'S' in cell.backbone else 1.0)
        std = statistics.stdev(maps) if len(maps) > 1 else 0.0
        ax.errorbar(
            x,
            statistics.fmean(maps),
            yerr=std,
            marker=markers.get(cell.backbone, 'o'),
            markersize=8,
            capsize=4,
            linestyle='none',
            mfc=None if cell.regularizer or 'S' not in cell.backbone else 'white',
            label=f'{cell.backbone}{_reg_label(cell)} (n={len(maps)})',
        )
    ax.set_xlabel('backbone parameters (M)')
    ax.set_ylabel('COCO bbox mAP (shapes val)')
    ax.set_title(f'Faster R-CNN from scratch on the shapes data, {epochs} epochs: mean ± std over seeds', fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_block_problem(readme: str, marker: str) -> Optional[str]:
    """Why ``readme`` cannot take the generated block ``marker`` (checked before any run), or None."""
    from mmbasis.utils.misc import replace_marked_block

    if not osp.isfile(readme):
        return f'--readme {readme}: no such file'
    with open(readme, encoding='utf-8') as f:
        try:
            replace_marked_block(f.read(), marker, '', where=f'--readme {readme}')
        except ValueError as err:
            return str(err)
    return None


def update_readme(readme: str, table: str, command: str, marker: str) -> None:
    """Replace the block between ``<!-- {marker}:start -->`` and ``<!-- {marker}:end -->`` of ``readme``."""
    from mmbasis.utils.misc import replace_marked_block

    with open(readme, encoding='utf-8') as f:
        text = f.read()
    text = replace_marked_block(text, marker, f'{table}\n\n(generated by `{command}`)', where=readme)
    with open(readme, 'w', encoding='utf-8') as f:
        f.write(text)


# ------------------------------------------------------------------------------------------------ command line
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--cells', nargs='+', default=list(CELLS), metavar='CELL', help=f'grid cells (default: all): {", ".join(CELLS)}'
    )
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, help="epochs of every run (default: the configs', 8)")
    parser.add_argument('--val-interval', type=int, help='validate every E epochs (default: at the end only)')
    parser.add_argument('--jobs', type=int, default=1, help='runs at a time (default 1)')
    parser.add_argument('--threads', type=int, help='torch threads per run (default: cores / jobs)')
    parser.add_argument('--sv-every', type=int, default=20, help="sample the bases' statistics every N iterations")
    parser.add_argument(
        '--dataset',
        choices=list(DATASETS),
        default='default',
        help='the shapes data: default, or hard (6 classes, small/occluded objects, clutter); '
        'applied to every run as --cfg-options, so results of the two never mix',
    )
    parser.add_argument('--out-dir', default=osp.join('docs', 'results', 'sharing_study'))
    parser.add_argument('--dry-run', action='store_true', help='list the runs (and which are done) and exit')
    parser.add_argument('--summary-only', action='store_true', help='summarise the CSV without training')
    parser.add_argument(
        '--readme',
        help='also write the summary table into this file between <!-- MARKER:start --> and <!-- MARKER:end -->',
    )
    parser.add_argument(
        '--readme-marker',
        help='name of the README block to fill (default sharing-study-<E>e, E = the epochs of the grid)',
    )
    parser.add_argument(
        '--work-root',
        default=osp.join('work_dirs', 'sharing_study'),
        help="where the runs' work dirs go (default work_dirs/sharing_study)",
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='overrides applied to every run (mmengine --cfg-options syntax)',
    )
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    args.cfg_options = DATASETS[args.dataset] + args.cfg_options
    unknown = [c for c in args.cells if c not in CELLS]
    if unknown:
        parser.error(f'unknown cells {unknown}; choose from {", ".join(CELLS)}')
    for name in ('epochs', 'val_interval', 'jobs', 'threads', 'sv_every'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} {value} must be >= 1')
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds {args.seeds}: give distinct non-negative integers')
    if args.readme:
        args.readme_marker = args.readme_marker or f'sharing-study-{args.epochs or 8}e'
        problem = readme_block_problem(args.readme, args.readme_marker)
        if problem:
            parser.error(f'{problem}; add that block or choose another with --readme-marker')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        row = run_worker(json.loads(args.worker))
        print('RESULT ' + json.dumps(row), flush=True)
        return 0
    csv_path = osp.join(args.out_dir, 'runs.csv')
    options = json.dumps(args.cfg_options)
    parse_options(args.cfg_options)  # a malformed option fails here, before any run
    done = {run_key(r['cell'], r['seed'], r['epochs'], r['options']) for r in read_rows(csv_path)}
    epochs_key = args.epochs if args.epochs is not None else 8
    grid = [(c, s) for c in args.cells for s in args.seeds]
    pending = [(c, s) for c, s in grid if run_key(c, s, epochs_key, options) not in done]
    print(
        f'sharing study: {len(grid)} runs ({len(args.cells)} cells x {len(args.seeds)} seeds, '
        f'{epochs_key} epochs), {len(grid) - len(pending)} already in {csv_path}, {len(pending)} to run'
    )
    if args.dry_run or args.summary_only:
        for c, s in grid:
            state = 'pending' if (c, s) in pending else 'done'
            print(
                f'  {c:<22} seed {s}  {CELLS[c].config}  regulariser {"on" if CELLS[c].regularizer else "off"}'
                f'  [{state}]'
            )
    if not (args.dry_run or args.summary_only) and pending:
        os.makedirs(args.out_dir, exist_ok=True)
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)

        def one(run):
            cell, seed = run
            work = osp.join(args.work_root, run_dir(cell, seed, epochs_key, args.dataset))
            done_now = {run_key(r['cell'], r['seed'], r['epochs'], r['options']) for r in read_rows(csv_path)}
            if run_key(cell, seed, epochs_key, options) in done_now or not claim(work):
                print(f'  skipped: {cell} seed {seed} is done or running in another process', flush=True)
                return None
            spec = dict(
                cell=cell,
                seed=seed,
                epochs=args.epochs,
                val_interval=args.val_interval,
                work_dir=work,
                cfg_options=args.cfg_options,
                sv_every=args.sv_every,
                jobs=args.jobs,
            )
            row = launch(spec, threads, osp.join(work, 'study_run.log'))
            row['epochs'] = epochs_key
            append_row(csv_path, row)
            print(
                f'  done: {cell} seed {seed}: bbox_mAP {float(row["bbox_mAP"]):.3f} in {row["wall_s"] / 60:.1f} min',
                flush=True,
            )
            return row

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, pending))
    if args.dry_run:
        return 0
    rows = [r for r in read_rows(csv_path) if str(r['epochs']) == str(epochs_key) and r['options'] == options]
    if not rows:
        print(f'no finished runs in {csv_path} yet')
        return 0
    others = [r for r in read_rows(csv_path) if str(r['epochs']) != str(epochs_key) and r['options'] == options]
    table = summarize(rows) + schedule_check(rows, others)
    print(table)
    os.makedirs(args.out_dir, exist_ok=True)
    summary_path = osp.join(args.out_dir, f'summary_{epochs_key}e.md')
    png_path = osp.join(args.out_dir, f'sharing_study_{epochs_key}e.png')
    with open(summary_path, 'w', encoding='utf-8') as f:
        f.write(table + '\n')
    plot(rows, png_path, epochs_key)
    print(f'wrote {summary_path} and {png_path}')
    if args.readme:
        command = 'python tools/analysis_tools/sharing_study.py ' + ' '.join(argv or sys.argv[1:])
        update_readme(args.readme, table, command, marker=args.readme_marker)
    return 0


if __name__ == '__main__':
    sys.exit(main())
