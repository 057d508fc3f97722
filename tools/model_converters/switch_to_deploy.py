"""Convert a trained detector checkpoint into the deploy form of its mmbasis backbone.

    python tools/model_converters/switch_to_deploy.py CONFIG CKPT OUT [--calibrate H W] [--cfg-options k=v ...]

What it does is :func:`mmbasis.deploy.convert_checkpoint_to_deploy`: it builds the detector of CONFIG on the CPU,
loads CKPT strictly (``torch.load(weights_only=True)``; the
allowlist installed by ``import mmbasis`` admits full mmengine training checkpoints), calls
``model.backbone.switch_to_deploy()`` (every BatchNorm folded, shared-basis and factorised convolutions
turned into plain convolutions), checks that the backbone outputs are unchanged in eval mode and that
the result loads strictly into CONFIG with ``model.backbone.deploy=True``, and writes OUT atomically as
``dict(meta=..., state_dict=...)`` (``meta`` kept, plus ``deploy=True``; optimizer, scheduler, message
hub and EMA entries dropped: they belong to the training structure). Use OUT with::

    python tools/test.py CONFIG OUT --cfg-options model.backbone.deploy=True
"""

import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

import mmbasis  # noqa: F401  (registers modules, installs the checkpoint allowlist)
from mmbasis.deploy import convert_checkpoint_to_deploy
from mmbasis.utils import CheckpointFormatError, same_file
from mmbasis.utils.cli import read_config

# the library function this tool wraps, importable from here as before
__all__ = ['convert_checkpoint_to_deploy', 'main', 'parse_args']


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Switch the backbone of a trained detector checkpoint to deploy form')
    parser.add_argument('config', help='training config of the checkpoint')
    parser.add_argument('checkpoint', help='trained checkpoint (.pth); never modified')
    parser.add_argument('out', help='output deploy checkpoint (.pth); written atomically')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override settings of the config, key=value pairs'
    )
    parser.add_argument(
        '--check-size',
        type=int,
        nargs=2,
        default=(64, 64),
        metavar=('H', 'W'),
        help='input size of the before/after backbone check (default 64 64)',
    )
    parser.add_argument(
        '--calibrate',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help="choose each factorised conv's deploy form by timing both here at H x W (kept in meta['deploy_forms'])",
    )
    args = parser.parse_args(argv)
    if args.calibrate and min(args.calibrate) < 32:
        parser.error(f'--calibrate must be at least 32 32, got {args.calibrate[0]} {args.calibrate[1]}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if osp.exists(args.checkpoint) and same_file(args.checkpoint, args.out):
            raise ValueError(f'OUT {args.out!r} is the input checkpoint; choose another output path')
        cfg = read_config(args.config, args.cfg_options)
        calibrate = tuple(args.calibrate) if args.calibrate else None
        report = convert_checkpoint_to_deploy(
            cfg, args.checkpoint, args.out, tuple(args.check_size), calibrate=calibrate
        )
    except (FileNotFoundError, CheckpointFormatError, ValueError, TypeError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(
        f'saved the deploy checkpoint {args.out}: {report.num_tensors_before} -> {report.num_tensors_after} '
        f'tensors; backbone outputs before/after: max |diff| {report.max_abs_diff:.3g} '
        f'(output scale {report.max_abs_ref:.3g})'
    )
    if report.dropped_keys:
        print(f'not carried over (training state): {", ".join(report.dropped_keys)}')
    if report.deploy_forms:
        merged = sum(f == 'merged' for f in report.deploy_forms.values())
        print(f'deploy forms measured: {merged} merged, {len(report.deploy_forms) - merged} factorized')
    backbone = 'deploy=True' + (f', deploy_forms={report.deploy_forms!r}' if report.deploy_forms else '')
    print(
        f'use it with:\n  python tools/test.py {args.config} {args.out}   (reads the deploy settings from its meta)\n'
        f'or set model = dict(backbone=dict({backbone})) in a config inheriting the training one'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
