"""The main job on the embedded default: train a shared-filter-basis Faster R-CNN with the orthogonality
regulariser on the generated shapes dataset, then report its COCO bbox metrics.

    python tools/demo.py [--config CONFIG] [--work-dir DIR] [--cfg-options k=v ...]

The dataset is generated under data/shapes/ on first use; logs and checkpoints go to the work dir
(default work_dirs/demo). Exit code 0 only when training and evaluation finished.
"""
import argparse
import os.path as osp
import sys
import time

import mmbasis  # noqa: F401
from mmengine.config import DictAction
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmbasis.utils import get_config_path
from mmbasis.utils.cli import load_config

DEFAULT_CONFIG = 'demo/faster-rcnn_r18-s16u1_slim-fpn_shapes.py'


class _KeepMetrics(Hook):
    priority = 'VERY_LOW'

    def __init__(self):
        self.metrics = {}
        self.loss_orth = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if outputs and 'loss_orth' in outputs:
            self.loss_orth.append(float(outputs['loss_orth']))

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = dict(metrics or {})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=None, help=f'config (default: configs/{DEFAULT_CONFIG})')
    parser.add_argument('--work-dir', default='work_dirs/demo', help='logs and checkpoints (default work_dirs/demo)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='config overrides, key=value')
    args = parser.parse_args(argv)
    config = args.config or get_config_path(DEFAULT_CONFIG)
    cfg = load_config(config, args.cfg_options, args.work_dir, 'none')
    keep = _KeepMetrics()
    t0 = time.time()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(keep)
    runner.train()
    minutes = (time.time() - t0) / 60
    ckpt = osp.join(cfg.work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')
    if not keep.metrics:
        print('demo: training finished but no evaluation ran (check val_interval in the config)', file=sys.stderr)
        return 1
    print('\n==== mmbasis demo ====')
    print(f'config      : {config}')
    print(f'time        : {minutes:.1f} min on this machine')
    if keep.loss_orth:
        print(f'loss_orth   : {keep.loss_orth[0]:.3e} (first iteration) -> {keep.loss_orth[-1]:.3e} (last)')
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        if key in keep.metrics:
            print(f'{key:<18}: {keep.metrics[key]:.3f}')
    print(f'checkpoint  : {ckpt}')
    print(f'logs        : {runner.log_dir}')
    print(f'evaluate again with: python tools/test.py {config} {ckpt}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
