"""What every study shares: one run of a grid's cell as an ordinary config run, the CSV of runs and its claims,
summaries and the doc blocks they fill.

The grids themselves (:class:`experiments.grids.Grid`: the cells of a study on one dataset, a config with or without
the regulariser each, the metric keys of its evaluator, its data variants) are data in :mod:`experiments.grids`. A
run of a cell is the cell's config with exactly the grid's overrides (:func:`run_config`: the seed, the regulariser
kept or removed, the schedule, ``BasisStatsHook``), written into the run's work dir and trained by ``tools/train.py``
in a fresh interpreter (:func:`train`), so the run is reproduced by ``python tools/train.py WORK_DIR/run_config.py``
alone. Its results are read from what the run leaves there: the hook's records (losses per iteration, the statistics
of the bases) and mmengine's validation scalars.

Several study processes can share one grid: a run is claimed (:func:`claim`) before it starts and appended to the
CSV when it ends; runs already in the CSV are skipped. A run whose process died (a sitting of the machine ended)
resumes from the latest checkpoint in its work dir (mmengine's resume, which continues a run exactly), so a grid of
runs longer than a sitting loses at most one checkpoint interval per interruption.
"""

import argparse
import csv
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from experiments.grids import Cell

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
REG_HOOK = 'OrthogonalityRegularizerHook'
STATS_HOOK = 'BasisStatsHook'
RUN_CONFIG = 'run_config.py'


# ------------------------------------------------------------------------------------------------ one run
def parse_options(options: Sequence[str]) -> dict:
    """``--cfg-options`` strings (``key=value``) parsed as mmengine's tools parse them."""
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(['--cfg-options', *options]).cfg_options if options else {}


def run_config(
    cell: Cell,
    seed: int,
    epochs: Optional[int],
    val_interval: Optional[int],
    work_dir: str,
    options: Sequence[str],
    init_checkpoint: Optional[str] = None,
    stats: Optional[dict] = None,
    checkpoint_interval: Optional[int] = None,
):
    """The cell's config with exactly the grid's overrides (``options``: ``key=value`` strings).

    The seed (``randomness.seed``); the regulariser kept (``cell.regularizer``) or removed; the schedule
    (``epochs``: max_epochs, the LR step at 3/4 of it; ``val_interval``, default the end only); checkpoints every
    ``checkpoint_interval`` epochs (default every half schedule: the warm-start study decomposes the plain runs at
    half time), two kept; ``init_checkpoint``: the
    backbone's ``Pretrained`` weights; ``BasisStatsHook(**stats)`` appended to ``custom_hooks`` (recording the losses
    of every iteration). The hook draws no random number, so the run trains as the cell's config would.
    """
    from mmbasis.utils.cli import read_config

    cfg = read_config(osp.join(REPO, 'configs', cell.config), parse_options(options))
    cfg.randomness = dict(seed=seed)
    hooks = [h for h in cfg.get('custom_hooks', []) if cell.regularizer or h.get('type') != REG_HOOK]
    if cell.regularizer and not any(h.get('type') == REG_HOOK for h in hooks):
        raise ValueError(f'{cell.config} has no {REG_HOOK} to keep')
    cfg.custom_hooks = hooks + [dict(type=STATS_HOOK, **dict(dict(interval=20, record_losses=True), **(stats or {})))]
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        for sched in cfg.param_scheduler:
            if sched.get('type') == 'MultiStepLR':
                sched.update(end=epochs, milestones=[max(1, round(0.75 * epochs))])
    cfg.train_cfg.val_interval = val_interval or cfg.train_cfg.max_epochs
    cfg.default_hooks.checkpoint = dict(
        type='SafeCheckpointHook',
        interval=checkpoint_interval or max(1, cfg.train_cfg.max_epochs // 2),
        max_keep_ckpts=2,
    )
    if init_checkpoint is not None:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=init_checkpoint)
    cfg.work_dir = work_dir
    return cfg


def can_resume(work_dir: str) -> bool:
    """Whether ``work_dir`` holds a checkpoint of an interrupted run (mmengine's ``last_checkpoint`` pointer)."""
    return osp.isfile(osp.join(work_dir, 'last_checkpoint'))


def _comparable(cfg) -> dict:
    """A config as a plain dict without what ``tools/train.py`` and mmengine's runner add or set when they dump it
    into the work dir (``_scope_`` keys, ``work_dir``, ``launcher``, ``resume``, ``load_from``)."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != '_scope_'}
        if isinstance(x, (list, tuple)):
            return [strip(v) for v in x]
        return x

    d = strip(cfg.to_dict())
    for key in ('work_dir', 'launcher', 'resume', 'load_from'):
        d.pop(key, None)
    return d


def train(cfg, threads: int, log_path: str, expect_ok: bool = True, resume: bool = False) -> int:
    """Write ``cfg`` to ``work_dir/run_config.py`` and train it with ``tools/train.py`` in a fresh interpreter
    (``threads`` torch threads); the output goes to ``log_path``. Returns the exit code; raises with the log's tail
    when ``expect_ok`` and the run failed.

    ``resume``: continue the interrupted run of the work dir from its latest checkpoint (``tools/train.py --resume``),
    appending to ``log_path``; refused (``ValueError``) when the work dir's ``run_config.py`` is not ``cfg`` (up to
    what the runner adds when it dumps it), so a run never continues from another configuration's checkpoint.
    """
    from mmengine.config import Config

    os.makedirs(cfg.work_dir, exist_ok=True)
    path = osp.join(cfg.work_dir, RUN_CONFIG)
    if resume:
        if not can_resume(cfg.work_dir) or not osp.isfile(path):
            raise ValueError(f'cannot resume in {cfg.work_dir}: it has no last_checkpoint or no {RUN_CONFIG}')
        if _comparable(Config.fromfile(path)) != _comparable(cfg):
            raise ValueError(
                f'{path} differs from the run to resume: its checkpoints belong to another configuration; '
                'move the work dir away to start this run afresh'
            )
    else:
        cfg.dump(path)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS='ignore')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH')) if p)
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), path, '--work-dir', cfg.work_dir]
    with open(log_path, 'a' if resume else 'w', encoding='utf-8') as log:
        proc = subprocess.run(
            cmd + (['--resume'] if resume else []), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    if expect_ok and proc.returncode != 0:
        with open(log_path, encoding='utf-8') as log:
            tail = log.read().splitlines()[-15:]
        raise RuntimeError(
            f'the run in {cfg.work_dir} failed (exit {proc.returncode}); {log_path} ends:\n' + '\n'.join(tail)
        )
    return proc.returncode


@dataclass
class RunRecord:
    """What a finished run left in its work dir: the hook's records, the validations and the training time."""

    records: List[dict]  # BasisStatsHook records, in iteration order
    validations: List[dict]  # mmengine's validation scalars (``step`` = epochs done), in order
    wall_s: float  # seconds of training (of a resumed run: the work kept from each of its processes)

    @property
    def iters(self) -> int:
        return max(r['iter'] for r in self.records)

    def losses(self, key: str) -> List[float]:
        """Every iteration's value of the loss term ``key`` (iterations without it are left out)."""
        return [r['losses'][key] for r in self.records if key in r.get('losses', {})]

    def task_losses(self) -> List[float]:
        """Every iteration's loss without the regulariser's term."""
        return [r['losses']['loss'] - r['losses'].get('loss_orth', 0.0) for r in self.records if 'losses' in r]

    def bases(self) -> List[dict]:
        """The records of the bases (before the first iteration, then every ``interval``)."""
        return [r for r in self.records if 'l_orth' in r]

    def curve(self, metric: str, epochs: int) -> List[list]:
        """``[[epoch, iteration, value], ...]`` of every validation (NaN where the metric is missing)."""
        per_epoch = self.iters // epochs
        return [[v['step'], v['step'] * per_epoch, float(v.get(metric, float('nan')))] for v in self.validations]


def read_run_records(work_dir: str) -> List[dict]:
    """The ``BasisStatsHook`` records of a run (empty when it wrote none)."""
    from mmbasis.engine.hooks import read_basis_stats

    path = osp.join(work_dir, 'basis_stats.jsonl')
    return read_basis_stats(path) if osp.isfile(path) else []


def training_seconds(raw: List[dict]) -> float:
    """The training time of a run from its ``BasisStatsHook`` lines as written (``raw``, file order): each process
    (from its ``before_train`` line) counts until it ends (``after_train``) or, when a later process resumed from
    its checkpoint at iteration k, until its first record past k (the validation of that epoch done, the work
    after it redone by the next process and counted there); a process that died before its first checkpoint
    counts nothing."""
    starts = [i for i, r in enumerate(raw) if r.get('event') == 'before_train']
    total = 0.0
    for n, i in enumerate(starts):
        part = raw[i : starts[n + 1] if n + 1 < len(starts) else len(raw)]
        resumed_at = raw[starts[n + 1]]['iter'] if n + 1 < len(starts) else None
        if resumed_at is not None and resumed_at <= part[0]['iter']:
            continue  # died before its first checkpoint: the next process redid all of its work
        past = [r for r in part[1:] if resumed_at is None or r['iter'] > resumed_at]
        end = past[0] if past and resumed_at is not None else part[-1]
        total += end['time'] - part[0]['time'] if 'time' in end else 0.0
    return round(total, 1)


def read_run(work_dir: str) -> RunRecord:
    """The :class:`RunRecord` of a finished run: its hook records and the validations of every mmengine log folder
    (a resumed run has one per process; an epoch validated twice keeps its last validation)."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not logs:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}: did the run start?')
    by_step: Dict[int, dict] = {}
    for log in logs:  # folder names are start times: oldest first
        with open(log, encoding='utf-8') as f:
            for r in map(json.loads, f):
                if 'iter' not in r:  # training lines carry 'iter'
                    by_step[r['step']] = r
    raw: List[dict] = []
    path = osp.join(work_dir, 'basis_stats.jsonl')
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            raw = [json.loads(line) for line in f if line.strip()]
    return RunRecord(read_run_records(work_dir), [by_step[k] for k in sorted(by_step)], training_seconds(raw))


def parameters(cfg) -> Tuple[int, int]:
    """(backbone, detector) parameters of ``cfg.model`` (built on the meta device: shapes only)."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope(cfg.get('default_scope', 'mmdet'))
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    return sum(p.numel() for p in model.backbone.parameters()), sum(p.numel() for p in model.parameters())


def warmup_iters(cfg) -> int:
    """The iterations of the config's iteration-based warm-up (0 without one)."""
    return max((s.get('end', 0) for s in cfg.param_scheduler if not s.get('by_epoch', True)), default=0)


# ------------------------------------------------------------------------------------------------ the CSV
def read_rows(path: str) -> List[dict]:
    if not osp.isfile(path):
        return []
    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def append_row(path: str, row: dict, fields: Sequence[str]) -> None:
    """Append one row (header first if the file is new), flushed to disk before returning.

    A file written before a column was added (its header is a subset of ``fields``) is first rewritten with the new
    header, its rows left empty in the new columns, atomically (a temporary file replaces it); a file with a column
    that ``fields`` lacks is refused, so no recorded value is ever dropped."""
    header = _header(path)
    if header is not None and header != list(fields):
        unknown = [c for c in header if c not in fields]
        if unknown:
            raise ValueError(f'{path} has columns {unknown} that this study does not write (it writes {list(fields)})')
        rows = read_rows(path)
        tmp = f'{path}.tmp{os.getpid()}'
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            writer = csv.DictWriter(f, fieldnames=list(fields))
            writer.writeheader()
            writer.writerows({k: r.get(k, '') for k in fields} for r in rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    with open(path, 'a', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        if header is None:
            writer.writeheader()
        writer.writerow({k: row.get(k, '') for k in fields})
        f.flush()
        os.fsync(f.fileno())


def _header(path: str) -> Optional[List[str]]:
    """The columns of a CSV file (None when there is no file or it is empty)."""
    if not osp.isfile(path):
        return None
    with open(path, newline='', encoding='utf-8') as f:
        return next(csv.reader(f), None)


def cpu_model() -> str:
    """The processor's model name as the kernel reports it (``model name`` of /proc/cpuinfo), or the platform's
    answer elsewhere: recorded beside each run's wall time, which is only comparable on the same processor."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return ' '.join(line.split(':', 1)[1].split())
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or 'unknown'


def run_key(cell: str, seed, epochs, options: str) -> tuple:
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


def default_threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


# ------------------------------------------------------------------------------------------------ summaries
def mean_std(values: Sequence[float]) -> str:
    """``'0.504 ± 0.079'`` (mean ± sample std), one value alone, ``'-'`` for none."""
    if not values:
        return '-'
    if len(values) == 1:
        return f'{values[0]:.3f}'
    return f'{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}'


def command(tool: str, argv: Optional[Sequence[str]]) -> str:
    """The command line that ran ``tool`` (``python -m experiments.x ...``), for the generated blocks."""
    args = list(sys.argv[1:] if argv is None else argv)
    return f'python {tool} ' + ' '.join(args)


def write_doc(page: str, marker: str, table: str, cmd: str) -> None:
    """The block ``marker`` of ``page``: ``table`` and the command that generated it."""
    from mmbasis.utils.docs import write_block

    write_block(page, marker, f'{table}\n\n(generated by `{cmd}`)')


def pyplot():
    """matplotlib's pyplot without a display."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt
