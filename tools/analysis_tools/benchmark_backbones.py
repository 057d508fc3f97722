"""Speed, memory and size of shared-basis backbones against the mmdet networks they replace (a user command over
:mod:`mmbasis.analysis`; the grid behind the documentation's tables: ``python -m experiments.benchmark``).

    python tools/analysis_tools/benchmark_backbones.py [--models NAME ...] [--device cpu|cuda] [--batch 2]
        [--size 320] [--threads 2] [--reps 10] [--warmup 2] [--csv FILE] [--doc [PAGE]]
    python tools/analysis_tools/benchmark_backbones.py [--detectors CONFIG ...]
        [--trained OURS_CONFIG OURS_CKPT PLAIN_CONFIG PLAIN_CKPT ...] [--iters 5] ...
    python tools/analysis_tools/benchmark_backbones.py --layers [--models NAME ...] ...

Backbone mode (default): every paper model (``mmbasis.models.archs``) against its plain counterpart, both built here
with ``norm_eval=False``, timed *interleaved* (ours, theirs, theirs, ours, ...) after ``--warmup`` untimed calls per
mode: ``train`` (forward, sum of the outputs, backward; ours with the orthogonality regulariser as every config of
ours enables it, unless ``--no-regulariser``; the regulariser alone timed as a third function), ``eval``, ``deploy``
(ours after ``switch_to_deploy()``, theirs with mmcv's ``fuse_conv_bn``), ``deploy-cal`` (ours with deploy forms
chosen by timing) and ``onnx`` (onnxruntime on the deploy forms); the table gives the medians and the ratio
ours/theirs with the range of the per-repetition ratios. Per model also parameters, multiply-adds (mmengine's
``FlopAnalyzer``), the ``state_dict`` size and the peak memory of a training step.

Detector mode: ``--detectors CONFIG`` (untrained, heads zeroed on both sides; ``det-train``, ``det-forward-zeroed``)
and ``--trained OURS_CONFIG OURS_CKPT PLAIN_CONFIG PLAIN_CKPT`` (trained twins on validation images; ``det-forward``,
``det-infer`` with the final NMS). Layer mode (``--layers``): each distinct factorised convolution against the plain
convolution it replaces, and its basis convolution at rank R and at R rounded down to a multiple of 16.

The table goes to stdout; ``--csv`` also writes one row per model and mode, ``--doc`` the tables into the block
``benchmark`` (``-detectors``, ``-layers``) of ``docs/speed.md``. Timing is only meaningful on a quiet machine.
"""

import argparse
import importlib.util
import os
import sys
import time
from typing import List

import torch
from mmengine.config import DictAction

import mmbasis  # noqa: F401  (registers modules)
from mmbasis.analysis import (
    ALL_MODES,
    MODES,
    REGULARISER,
    BenchError,
    Settings,
    bench_backbones,
    bench_detectors,
    bench_layers,
    build_backbone,
    report,
    resolve_model,
)
from mmbasis.models.archs import PAPER_MODEL_NAMES
from mmbasis.utils.docs import add_doc_option, doc_target, write_block
from mmbasis.utils.misc import brief

DOC = 'docs/speed.md'


def parse_args(argv=None) -> argparse.Namespace:

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--models',
        nargs='+',
        default=list(PAPER_MODEL_NAMES),
        metavar='NAME',
        help='paper model names, or config files that define a backbone (shared_backbone or model.backbone), e.g. '
        'configs/_base_/backbones/r34-s47u1star.py for a hardware-aligned variant (default: every paper model)',
    )
    parser.add_argument(
        '--modes',
        nargs='+',
        default=list(MODES),
        choices=ALL_MODES,
        help=f'backbone mode: what to time (default {" ".join(MODES)}; also compile: torch.compile of both deploy '
        'forms, openvino: OpenVINO CPU runtime)',
    )
    parser.add_argument(
        '--detectors',
        nargs='+',
        metavar='CONFIG',
        help='detector mode, untrained: configs of ours against the same config with the plain backbone, heads '
        'zeroed on both sides (det-train with the configured regulariser, det-forward-zeroed)',
    )
    parser.add_argument(
        '--trained',
        nargs=4,
        action='append',
        metavar=('OURS_CONFIG', 'OURS_CKPT', 'PLAIN_CONFIG', 'PLAIN_CKPT'),
        help='detector mode, trained (repeatable): our trained detector against its trained plain twin (configs '
        "equal apart from the backbone) on --batch validation images of our config's dataset (det-forward, "
        'det-infer with the final NMS)',
    )
    parser.add_argument(
        '--end2end',
        action='store_true',
        help='with --trained: also each pair deployed end to end (--batch images in, boxes out, backbones folded) in '
        'PyTorch eager, torch.compile, onnxruntime and OpenVINO (e2e-eager, e2e-compile, e2e-onnxruntime, '
        'e2e-openvino), with the peak memory and the compile times',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='detector mode: overrides of every detector config (mmengine key=value syntax)',
    )
    parser.add_argument(
        '--no-regulariser',
        dest='regulariser',
        action='store_const',
        const=None,
        default=REGULARISER,
        help="backbone mode: time ours' training step without the orthogonality regulariser (default: with it, "
        'as every config of ours enables it: loss_weight 10, pooling paper)',
    )
    parser.add_argument(
        '--layers',
        action='store_true',
        help='layer mode: each distinct factorised convolution of --models against the plain convolution it '
        'replaces, and its basis convolution at rank R and at R rounded down to a multiple of 16',
    )
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N] (default cpu)')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=320, help='square input size (default 320)')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch chooses)')
    parser.add_argument('--reps', type=int, default=10, help='timed repetitions per model and mode (default 10)')
    parser.add_argument('--iters', type=int, default=5, help='timed iterations per detector and mode (default 5)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed calls first (default 2)')
    parser.add_argument('--csv', help='also write the rows to this CSV file')
    parser.add_argument(
        '--profile',
        type=int,
        default=0,
        metavar='ROWS',
        help="also print torch.profiler's top ROWS ops of each "
        'training step (ours and theirs; with --csv, also into a .profile.txt file beside it)',
    )
    add_doc_option(parser, DOC, 'the tables, machine and command (block benchmark, -detectors or -layers)')
    parser.add_argument(
        '--doc-block',
        metavar='NAME',
        help='the block of PAGE to fill (default benchmark, benchmark-detectors or benchmark-layers by mode)',
    )
    args = parser.parse_args(argv)

    unknown = [m for m in args.models if m not in PAPER_MODEL_NAMES and not os.path.isfile(m)]
    if unknown:
        parser.error(
            f'--models: unknown paper model(s) and no such config file(s): {unknown}; allowed: '
            f'{brief(PAPER_MODEL_NAMES)} or a config file that defines a backbone'
        )
    for m in args.models:
        if m not in PAPER_MODEL_NAMES:
            try:
                build_backbone(resolve_model(m)[1])  # its arguments checked now, not after other models' timings
            except (ValueError, KeyError, TypeError, OSError, SyntaxError) as err:
                parser.error(f'--models {m}: {err}')
    for name in ('batch', 'size', 'reps', 'iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1, got {getattr(args, name)}')
    for name in ('warmup', 'profile'):
        if getattr(args, name) < 0:
            parser.error(f'--{name} must be 0 or more, got {getattr(args, name)}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be at least 1, got {args.threads}')
    needs = {'onnx': ('onnxruntime', 'onnxscript'), 'openvino': ('openvino', 'onnxscript')}
    for what in [m for m in args.modes if m in needs] + (['onnx', 'openvino'] if args.end2end else []):
        missing = [p for p in needs[what] if importlib.util.find_spec(p) is None]
        if missing:
            parser.error(f'{what} needs {missing}: pip install -r requirements/deploy.txt (or leave {what} out)')
    if not (args.device == 'cpu' or args.device.startswith('cuda')):
        parser.error(f"--device must be 'cpu' or 'cuda[:N]', got {args.device!r}")
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: torch sees no CUDA device on this machine')
    args.detector_mode = bool(args.detectors or args.trained)
    if args.end2end and not args.trained:
        parser.error('--end2end times trained pairs: give them with --trained')
    args.doc = doc_target(args)
    if args.layers and args.detector_mode:
        parser.error('--layers and --detectors/--trained are separate modes: use one of them')
    for config in args.detectors or ():
        if not os.path.isfile(config):
            parser.error(f'--detectors: no such config file: {config}')
    for ours_cfg, ours_ckpt, plain_cfg, plain_ckpt in args.trained or ():
        for config in (ours_cfg, plain_cfg):
            if not os.path.isfile(config):
                parser.error(f'--trained: no such config file: {config}')
        for config, ckpt in ((ours_cfg, ours_ckpt), (plain_cfg, plain_ckpt)):
            if not os.path.isfile(ckpt):
                parser.error(
                    f'--trained: no such checkpoint: {ckpt} (the trained weights of {config}; train it first, e.g. '
                    f'python tools/train.py {config} --work-dir DIR, then give DIR/epoch_N.pth)'
                )
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = Settings(**{k: getattr(args, k) for k in Settings.__dataclass_fields__})
    reps = f'iterations {args.iters}' if args.detector_mode else f'reps {args.reps}'
    header = (
        f'device {device}, threads {torch.get_num_threads()}, batch {args.batch}, input {args.size}x{args.size}, '
        f'{reps}, warm-up {args.warmup}, torch {torch.__version__}, {time.strftime("%Y-%m-%d")}'
        + ("; --trained pairs: validation images at their test pipeline's size" if args.trained else '')
    )
    print(f'benchmark: {header}')
    rows: List[dict] = []
    times_lines, static_lines, profiles = report.times_header(), report.static_header(), []
    if args.layers:
        for model in args.models:
            name, cfg = resolve_model(model)
            layer_rows = bench_layers(name, cfg, settings, device)
            if not layer_rows:
                print(f'{name}: no factorised convolutions (whole-convolution sharing): nothing to time')
            rows.extend(layer_rows)
            for line in report.layer_table(layer_rows)[2:]:
                print(line, flush=True)
        times_lines = report.layer_table(rows)
    elif args.detector_mode:
        try:
            for ours, theirs, mode, t in bench_detectors(args.detectors or (), args.trained or (), settings, device):
                times_lines.append(report.row_text(ours, theirs, mode, t))
                rows.append(dict(ours=ours, theirs=theirs, mode=mode, **t))
                print(times_lines[-1], flush=True)
        except BenchError as err:
            raise SystemExit(f'error: {err}') from None
    else:
        rows, times_lines, static_lines, profiles = bench_backbones(args.models, settings, device, header)
    text = '\n'.join(times_lines) + ('\n\n' + '\n'.join(static_lines) if len(static_lines) > 2 else '')
    print('\n' + text)
    if args.doc:
        args_shown = ' '.join(repr(a) if ' ' in a or '*' in a else a for a in (sys.argv[1:] if argv is None else argv))
        marker = args.doc_block or 'benchmark' + (
            '-detectors' if args.detector_mode else '-layers' if args.layers else ''
        )
        command = f'python tools/analysis_tools/benchmark_backbones.py {args_shown}'
        write_block(args.doc, marker, f'{header}\n\n{text}\n\n(generated by `{command}`)')
    if args.csv:
        report.write_csv(args.csv, rows, profiles)
    return 0


if __name__ == '__main__':
    sys.exit(main())
