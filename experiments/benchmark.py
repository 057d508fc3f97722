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
#: trained SSD300 twins (their post-processing is where SSD's time beyond the backbone goes): each shared one (the
#: paper's ResNet34-S48U1* and S16U1*, the aligned S47U1* and S15U1*) against the plain one, after the first 4 epochs
#: of their 8-epoch schedule, trained first by
#: ``python tools/train.py CONFIG --work-dir work_dirs/shapes_ssd300_<backbone> --cfg-options train_cfg.max_epochs=4``
SSD_PLAIN = ('configs/shapes/ssd300_r34_scratch-8e_shapes.py', 'work_dirs/shapes_ssd300_r34/epoch_4.pth')
TRAINED_SSD = tuple(
    (f'configs/shapes/ssd300_r34-{v}_scratch-8e_shapes.py', f'work_dirs/shapes_ssd300_r34-{v}/epoch_4.pth', *SSD_PLAIN)
    for v in ('s48u1star', 's16u1star', 's47u1star', 's15u1star')
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
    'detectors-b8': [*TRAINED_ALL, '--end2end', '--batch', '8', '--threads', '2', '--iters', '5'],
}
#: the runs that fill a block of their own (``benchmark-RUN``) rather than the tool's default block of their mode
BLOCKS = ('aligned', 'aligned-layers', 'runtimes-b1', 'runtimes-b8', 'end2end', 'detectors-b8')


S48, S16, R34, FRCNN = 'ResNet34-S48U1*', 'ResNet34-S16U1*', 'ResNet-34', osp.basename(DETECTORS[0])
S47, DEPLOY_MODES = 'ResNet34-S47U1* (ours)', ('deploy', 'compile', 'onnx', 'openvino')
E2E_MODES = ('e2e-eager', 'e2e-compile', 'e2e-onnxruntime', 'e2e-openvino')
SSD = {v: osp.basename(pair[0]) for v, pair in zip(('S48', 'S16', 'S47', 'S15'), TRAINED_SSD)}
SSD_R34, FRCNN_R18 = osp.basename(SSD_PLAIN[0]), osp.basename(TRAINED[0])
#: Targets we set ourselves: (what, CSV, ours, theirs, mode, measure, bound). ``measure``: a CSV column (``ratio``:
#: ours/theirs of the medians) or ``a/b``, the ratio of two columns; met when the measured value is <= bound.
#: ``ours`` and ``mode`` may be tuples (a class of models: the paper variant and an aligned one as accurate; the
#: runtimes users deploy with): the best (lowest) value over them is the measured one, or, with ``mode`` written
#: ``('worst', ...)``, the highest (a target that must hold in every runtime).
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
    # issue 23: the deployment targets, each class as the accuracy study admits it (S47U1* in the S48U1* class;
    # S15U1* not shown to be in the S16U1* class), in the best runtime at batch 8
    ('S48U1* class deploy, best runtime', 'runtimes-b8', (S48, S47), R34, DEPLOY_MODES, 'ratio', 0.87),
    ('S48U1* class (S47U1*) training step', 'aligned', S47, R34, 'train', 'ratio', 0.95),
    ('S48U1* class (S47U1*) training memory', 'aligned', S47, R34, 'train', 'ours_peak_mb/theirs_peak_mb', 1.05),
    ('S16U1* class deploy, best runtime', 'runtimes-b8', S16, R34, DEPLOY_MODES, 'ratio', 0.47),
    ('SSD300 S48U1* class end to end, batch 1', 'end2end', (SSD['S48'], SSD['S47']), SSD_R34, E2E_MODES, 'ratio', 0.92),
    (
        'SSD300 S48U1* class end to end, batch 8',
        'detectors-b8',
        (SSD['S48'], SSD['S47']),
        SSD_R34,
        E2E_MODES,
        'ratio',
        0.92,
    ),
    ('SSD300 S16U1* class end to end, batch 1', 'end2end', SSD['S16'], SSD_R34, E2E_MODES, 'ratio', 0.65),
    ('SSD300 S16U1* class end to end, batch 8', 'detectors-b8', SSD['S16'], SSD_R34, E2E_MODES, 'ratio', 0.65),
    (
        'Faster R-CNN end to end, every runtime, batch 1',
        'end2end',
        FRCNN_R18,
        'faster-rcnn_r18_slim-fpn_scratch-8e_shapes.py',
        ('worst', *E2E_MODES),
        'ratio',
        1.00,
    ),
    (
        'Faster R-CNN end to end, every runtime, batch 8',
        'detectors-b8',
        FRCNN_R18,
        'faster-rcnn_r18_slim-fpn_scratch-8e_shapes.py',
        ('worst', *E2E_MODES),
        'ratio',
        1.00,
    ),
)


def command(run: str, out_dir: str = OUT, doc: Optional[str] = None) -> List[str]:
    """The arguments of the benchmark command for ``run`` (its CSV in ``out_dir``, its block in ``doc``)."""
    block = ['--doc-block', f'benchmark-{run}'] if doc and run in BLOCKS else []
    return [*RUNS[run], '--csv', osp.join(out_dir, f'{run}.csv'), *(['--doc', doc, *block] if doc else [])]


def measure(rows: Sequence[dict], ours, theirs: str, mode, what: str) -> Optional[Tuple[float, str, str]]:
    """The measured value of a target in the rows of its CSV and the model and mode it was measured on (None when
    no pair and mode of the target was run); ``ours``/``mode`` tuples as in :data:`TARGETS`."""
    models = (ours,) if isinstance(ours, str) else tuple(ours)
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    pick = max if modes[0] == 'worst' else min
    values = []
    for row in rows:
        if row['ours'] in models and row['theirs'] == theirs and row['mode'] in modes:
            if '/' in what:
                a, b = what.split('/')
                values.append((float(row[a]) / float(row[b]), row['ours'], row['mode']))
            else:
                values.append((float(row[what]), row['ours'], row['mode']))
    return pick(values) if values else None


def targets(out_dir: str = OUT) -> str:
    """The markdown table of :data:`TARGETS` read from the CSVs of ``out_dir``."""
    lines = ['| target | theirs | bound | measured (ours, mode) | |', '|---|---|---|---|---|']
    cache: Dict[str, List[dict]] = {}
    for what, run, ours, theirs, mode, measure_of, bound in TARGETS:
        path = osp.join(out_dir, f'{run}.csv')
        if run not in cache:
            with open(path, encoding='utf-8') if osp.isfile(path) else open(osp.devnull) as f:
                cache[run] = list(csv.DictReader(f))
        found = measure(cache[run], ours, theirs, mode, measure_of)
        value = None if found is None else found[0]
        verdict = 'not measured' if value is None else 'met' if value <= bound else f'missed by {value - bound:.3f}'
        shown = '-' if found is None else f'{value:.3f}x ({found[1]}, {found[2]})'
        lines.append(f'| {what} | {theirs} | at most {bound:.2f}x | {shown} | {verdict} |')
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
