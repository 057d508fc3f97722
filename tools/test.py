"""Test (evaluate) a checkpoint (mmdet 3.3's tools/test.py flags; imports mmbasis first).

python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--show] [--show-dir DIR]
                                       [--wait-time S] [--tta] [--deploy [--calibrate H W]] [--cfg-options k=v ...]
                                       [--launcher ...]
"""

import argparse
import os.path as osp
from copy import deepcopy

from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmdet.registry import RUNNERS
from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.runner import Runner

import mmbasis  # noqa: F401  (registers modules, installs the checkpoint allowlist)
from mmbasis.compat import setup_cpu_distributed, shutdown_distributed
from mmbasis.deploy import apply_deploy_meta
from mmbasis.utils import CheckpointFormatError
from mmbasis.utils.cli import add_common_args, load_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump predictions to a pickle file (must end with .pkl or .pickle)')
    parser.add_argument('--show', action='store_true', help='show prediction results in a window')
    parser.add_argument('--show-dir', help='save images with predictions drawn (under work_dir/<timestamp>/)')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of --show (s)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (horizontal flip)')
    deploy = 'fold the backbone into its deploy form after loading CHECKPOINT (a training checkpoint)'
    parser.add_argument('--deploy', action='store_true', help=deploy)
    parser.add_argument(
        '--calibrate',
        nargs=2,
        type=int,
        metavar=('H', 'W'),
        help="with --deploy: choose each factorised conv's form by timing both on this device at H x W",
    )
    add_common_args(parser)
    return parser.parse_args(argv)


def enable_flip_tta(cfg: Config) -> Config:
    """Wrap the model in ``DetTTAModel`` with a flip ``TestTimeAug`` pipeline unless the config has its own."""
    if 'tta_model' not in cfg:
        print_log('no tta_model in the config: using DetTTAModel with NMS 0.5, 100 boxes', logger='current')
        cfg.tta_model = dict(type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        print_log('no tta_pipeline in the config: flipping the test pipeline', logger='current')
        dataset = cfg.test_dataloader.dataset
        while 'dataset' in dataset:
            dataset = dataset['dataset']
        pipeline = deepcopy(dataset.pipeline)
        pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[
                [dict(type='RandomFlip', prob=1.0), dict(type='RandomFlip', prob=0.0)],
                [
                    dict(
                        type='PackDetInputs',
                        meta_keys=(
                            'img_id',
                            'img_path',
                            'ori_shape',
                            'img_shape',
                            'scale_factor',
                            'flip',
                            'flip_direction',
                        ),
                    )
                ],
            ],
        )
        cfg.tta_pipeline = pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint {args.checkpoint!r} does not exist')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'error: --out {args.out!r} must end with .pkl or .pickle')
    if args.calibrate and not args.deploy:
        raise SystemExit('error: --calibrate chooses deploy forms: it needs --deploy')
    setup_cache_size_limit_of_dynamo()
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher, args.local_rank)
    cfg.load_from = args.checkpoint
    try:
        apply_deploy_meta(cfg, args.checkpoint)
    except CheckpointFormatError as e:
        raise SystemExit(f'error: {e}') from e
    if args.show or args.show_dir:
        if 'visualization' not in cfg.get('default_hooks', {}):
            raise SystemExit(
                'error: --show/--show-dir need a visualization hook in the config: '
                "default_hooks.visualization=dict(type='DetVisualizationHook')"
            )
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        cfg = enable_flip_tta(cfg)
    if args.deploy:  # after the runner has loaded the checkpoint (SwitchToDeployHook)
        hook = dict(type='SwitchToDeployHook', calibrate_shape=args.calibrate)
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [hook]
    setup_cpu_distributed(cfg)  # --launcher pytorch/slurm without a GPU: gloo + CPU DDP
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    runner.test()
    del runner  # releases the DDP wrapper before the process group goes
    shutdown_distributed()


if __name__ == '__main__':
    main()
