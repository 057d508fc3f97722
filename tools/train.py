"""Train a detector from a config (mmdet 3.3's tools/train.py flags; imports mmbasis first).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

``--resume`` without a path resumes from the latest checkpoint of the work dir (``last_checkpoint``).
Full training checkpoints load with ``weights_only=True`` on torch >= 2.6 thanks to the allowlist that
``import mmbasis`` installs (mmbasis/compat/checkpoint_allowlist.py).
"""

import argparse

from mmdet.registry import RUNNERS
from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.logging import print_log
from mmengine.runner import Runner

import mmbasis  # noqa: F401  (registers modules, installs the checkpoint allowlist)
from mmbasis.compat import setup_cpu_distributed, shutdown_distributed
from mmbasis.engine import NonFiniteLossError
from mmbasis.utils.cli import add_common_args, load_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (needs a GPU)')
    scale = 'scale the lr by (total batch size / auto_scale_lr.base_batch_size)'
    parser.add_argument('--auto-scale-lr', action='store_true', help=scale)
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work dir when no path is given',
    )
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_cache_size_limit_of_dynamo()
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher, args.local_rank)
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in the config', logger='current')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('error: --auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    setup_cpu_distributed(cfg)  # --launcher pytorch/slurm without a GPU: gloo + CPU DDP
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    try:
        runner.train()
    except NonFiniteLossError as e:  # FiniteLossHook already logged it; one line, no traceback
        raise SystemExit(f'error: {e}') from None
    del runner  # releases the DDP wrapper before the process group goes
    shutdown_distributed()


if __name__ == '__main__':
    main()
