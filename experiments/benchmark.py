"""The speed benchmark behind ``docs/speed.md``: its grid, CSVs, doc blocks and the targets it is read against.

    python -m experiments.benchmark [--runs backbones layers detectors] [--doc [PAGE]] [--dry-run] [--targets-only]

The grid is three runs of the user command ``tools/analysis_tools/benchmark_backbones.py`` (the measurements:
:mod:`mmbasis.analysis`), each in a fresh interpreter: every paper backbone against the network it replaces
(``backbones``), each factorised convolution of the two ResNet34 factorisations against the plain one (``layers``),
and two whole detectors (``detectors``). Each writes its CSV under ``docs/results/benchmark/`` and, with ``--doc``,
its block of ``docs/speed.md`` (``benchmark``, ``benchmark-layers``, ``benchmark-detectors``). Then the targets we
set ourselves (:data:`TARGETS`) are read from the CSVs: measured value, bound, met or missed, written to
``docs/results/benchmark/targets.md``. Run it on a quiet machine only: a second process on the same cores changes
a ratio by 30 % or more.
"""

import argparse
import csv
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from experiments import common

OUT = osp.join('docs', 'results', 'benchmark')
TOOL = osp.join('tools', 'analysis_tools', 'benchmark_backbones.py')
DETECTORS = (
    'configs/faster_rcnn/faster-rcnn_r34-s48u1star-in1k_fpn_1x_coco.py',
    'configs/ssd/ssd300_r34-s48u1star-in1k_8xb8-120e_coco.py',
)
#: the trained twins whose inference is timed with their real post-processing (untrained heads predict nothing, so
#: NMS would never run): the demo's detector and its plain twin, trained first by
#: ``python tools/train.py CONFIG --work-dir work_dirs/shapes_r18-s16u1`` (and ``.../shapes_r18`` for the plain one)
TRAINED = (
    'configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py',
    'work_dirs/shapes_r18-s16u1/epoch_8.pth',
    'configs/shapes/faster-rcnn_r18_slim-fpn_scratch-8e_shapes.py',
    'work_dirs/shapes_r18/epoch_8.pth',
)
#: trained SSD300 twins (their post-processing is where SSD's time beyond the backbone goes): each shared one
#: against the plain one, after the first 4 epochs of their 8-epoch schedule, trained first by
#: ``python tools/train.py CONFIG --work-dir work_dirs/shapes_ssd300_<backbone> --cfg-options train_cfg.max_epochs=4``
SSD_PLAIN = ('configs/shapes/ssd300_r34_scratch-8e_shapes.py', 'work_dirs/shapes_ssd300_r34/epoch_4.pth')
TRAINED_SSD = tuple(
    (f'configs/shapes/ssd300_r34-{v}_scratch-8e_shapes.py', f'work_dirs/shapes_ssd300_r34-{v}/epoch_4.pth', *SSD_PLAIN)
    for v in ('s48u1star', 's16u1star')
)
#: every trained pair, as ``--trained`` arguments
TRAINED_ALL = [a for pair in (TRAINED, *TRAINED_SSD) for a in ('--trained', *pair)]
#: the hardware-aligned variants (ours, not the paper's: total ranks multiples of 16), by their backbone configs
ALIGNED = ('configs/_base_/backbones/r34-s47u1star.py', 'configs/_base_/backbones/r34-s15u1star.py')
#: the paper variants and the aligned ones in every inference runtime of the deploy forms
RUNTIMES = ['--models', 'ResNet34-S48U1*', 'ResNet34-S16U1*', *ALIGNED, '--modes', 'deploy', 'compile', 'onnx']
RUNTIMES += ['openvino', '--threads', '2']
#: the runs of the grid: their arguments of the benchmark command (CSV added by :func:`command`; with ``--doc``
#: the block of the page is benchmark[-NAME] as the tool picks it, or ``benchmark-RUN`` for the runs of BLOCKS)
RUNS: Dict[str, List[str]] = {
    'backbones': ['--threads', '2', '--reps', '7', '--profile', '12'],
    'layers': ['--layers', '--models', 'ResNet34-S48U1*', 'ResNet34-S16U1*', '--threads', '2', '--reps', '10'],
    'detectors': ['--detectors', *DETECTORS, '--trained', *TRAINED, '--threads', '2', '--iters', '7'],
    'aligned': ['--models', *ALIGNED, '--threads', '2', '--reps', '7'],
    'aligned-layers': ['--layers', '--models', *ALIGNED, '--threads', '2', '--reps', '10'],
    'runtimes-b1': [*RUNTIMES, '--batch', '1', '--reps', '10'],
    'runtimes-b8': [*RUNTIMES, '--batch', '8', '--reps', '5'],
    'end2end': [*TRAINED_ALL, '--end2end', '--batch', '1', '--threads', '2', '--iters', '10'],
    'detectors-b8': [*TRAINED_ALL, '--batch', '8', '--threads', '2', '--iters', '5'],
}
#: the runs that fill a block of their own (``benchmark-RUN``) rather than the tool's default block of their mode
BLOCKS = ('aligned', 'aligned-layers', 'runtimes-b1', 'runtimes-b8', 'end2end', 'detectors-b8')


S48, S16, R34, FRCNN = 'ResNet34-S48U1*', 'ResNet34-S16U1*', 'ResNet-34', osp.basename(DETECTORS[0])
#: Targets we set ourselves: (what, CSV, ours, theirs, mode, measure, bound). ``measure``: a CSV column (``ratio``:
#: ours/theirs of the medians) or ``a/b``, the ratio of two columns; met when the measured value is <= bound.
TARGETS: Tuple[tuple, ...] = (
    (f'{S48} state_dict', 'backbones', S48, R34, 'train', 'ours_ckpt_mb/theirs_ckpt_mb', 0.55),
    (f'{S48} training step', 'backbones', S48, R34, 'train', 'ratio', 0.95),
    (f'{S48} deploy, measured forms', 'backbones', S48, R34, 'deploy-cal', 'ratio', 0.90),
    (f'{S48} training memory', 'backbones', S48, R34, 'train', 'ours_peak_mb/theirs_peak_mb', 1.05),
    (f'{S16} training step', 'backbones', S16, R34, 'train', 'ratio', 0.55),
    (f'{S16} deploy', 'backbones', S16, R34, 'deploy', 'ratio', 0.50),
    ('ResNet50-Shared eval', 'backbones', 'ResNet50-Shared', 'ResNet-50', 'eval', 'ratio', 1.02),
    ('ResNet101-Shared eval', 'backbones', 'ResNet101-Shared', 'ResNet-101', 'eval', 'ratio', 1.02),
    ('Faster R-CNN training iteration', 'detectors', FRCNN, 'plain backbone', 'det-train', 'ratio', 1.00),
)


def command(run: str, out_dir: str = OUT, doc: Optional[str] = None) -> List[str]:
    """The arguments of the benchmark command for ``run`` (its CSV in ``out_dir``, its block in ``doc``)."""
    block = ['--doc-block', f'benchmark-{run}'] if doc and run in BLOCKS else []
    return [*RUNS[run], '--csv', osp.join(out_dir, f'{run}.csv'), *(['--doc', doc, *block] if doc else [])]


def measure(rows: Sequence[dict], ours: str, theirs: str, mode: str, what: str) -> Optional[float]:
    """The measured value of a target in the rows of its CSV (None when the pair or mode was not run)."""
    row = next((r for r in rows if r['ours'] == ours and r['theirs'] == theirs and r['mode'] == mode), None)
    if row is None:
        return None
    if '/' in what:
        a, b = what.split('/')
        return float(row[a]) / float(row[b])
    return float(row[what])


def targets(out_dir: str = OUT) -> str:
    """The markdown table of :data:`TARGETS` read from the CSVs of ``out_dir``."""
    lines = ['| target | ours / theirs | bound | measured | |', '|---|---|---|---|---|']
    cache: Dict[str, List[dict]] = {}
    for what, run, ours, theirs, mode, measure_of, bound in TARGETS:
        path = osp.join(out_dir, f'{run}.csv')
        if run not in cache:
            with open(path, encoding='utf-8') if osp.isfile(path) else open(osp.devnull) as f:
                cache[run] = list(csv.DictReader(f))
        value = measure(cache[run], ours, theirs, mode, measure_of)
        verdict = 'not measured' if value is None else 'met' if value <= bound else f'missed by {value - bound:.2f}'
        shown = '-' if value is None else f'{value:.2f}x'
        lines.append(f'| {what} ({mode}) | {ours} / {theirs} | at most {bound:.2f}x | {shown} | {verdict} |')
    return (
        '\n'.join(lines) + f'\n\n(generated by `python -m experiments.benchmark --targets-only` from {out_dir}/*.csv)'
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', nargs='+', choices=list(RUNS), default=list(RUNS), help='default: all')
    parser.add_argument('--out-dir', default=OUT, help=f'where the CSVs go (default {OUT})')
    parser.add_argument('--doc', nargs='?', const='docs/speed.md', help='also fill the blocks of PAGE (docs/speed.md)')
    parser.add_argument('--dry-run', action='store_true', help='print the commands and exit')
    parser.add_argument('--targets-only', action='store_true', help='read the targets from the existing CSVs')
    args = parser.parse_args(argv)
    if not args.targets_only:
        for run in args.runs:
            cmd = [sys.executable, TOOL, *command(run, args.out_dir, args.doc)]
            print(' '.join(cmd[1:]), flush=True)
            if not args.dry_run and subprocess.run(cmd, cwd=common.REPO).returncode != 0:
                print(f'error: the {run} run failed', file=sys.stderr)
                return 1
    if args.dry_run:
        return 0
    table = targets(args.out_dir)
    print(table)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'targets.md'), 'w', encoding='utf-8') as f:
        f.write(table + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
