"""Convert a trained detector checkpoint into the deploy form of its mmbasis backbone.

    python tools/model_converters/switch_to_deploy.py CONFIG CKPT OUT [--cfg-options k=v ...]

Builds the detector of CONFIG on the CPU, loads CKPT strictly (``torch.load(weights_only=True)``; the
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

import mmbasis  # noqa: F401  (registers modules, installs the checkpoint allowlist)
from mmengine.config import Config, DictAction

from mmbasis.models.converters import CheckpointFormatError, convert_checkpoint_to_deploy, deploy_usage, same_file


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Switch the backbone of a trained detector checkpoint to deploy form')
    parser.add_argument('config', help='training config of the checkpoint')
    parser.add_argument('checkpoint', help='trained checkpoint (.pth); never modified')
    parser.add_argument('out', help='output deploy checkpoint (.pth); written atomically')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value pairs')
    parser.add_argument('--check-size', type=int, nargs=2, default=(64, 64), metavar=('H', 'W'),
                        help='input size of the before/after backbone check (default 64 64)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if not osp.isfile(args.config):
            raise FileNotFoundError(f'config file {args.config!r} does not exist')
        if osp.exists(args.checkpoint) and same_file(args.checkpoint, args.out):
            raise ValueError(f'OUT {args.out!r} is the input checkpoint; choose another output path')
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        report = convert_checkpoint_to_deploy(cfg, args.checkpoint, args.out, tuple(args.check_size))
    except (FileNotFoundError, CheckpointFormatError, ValueError, TypeError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'saved the deploy checkpoint {args.out}: {report.num_tensors_before} -> {report.num_tensors_after} '
          f'tensors; backbone outputs before/after: max |diff| {report.max_abs_diff:.3g} '
          f'(output scale {report.max_abs_ref:.3g})')
    if report.dropped_keys:
        print(f'not carried over (training state): {", ".join(report.dropped_keys)}')
    usage = deploy_usage(args.config, args.out)
    print(f'use it with:\n  {usage["test"]}\nor set in a config: {usage["config"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
