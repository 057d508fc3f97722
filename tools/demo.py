"""The main job on the embedded default: train a shared-filter-basis Faster R-CNN with the orthogonality
regulariser on the generated shapes dataset, then report its COCO bbox metrics.

    python tools/demo.py [--config CONFIG] [--work-dir DIR] [--cfg-options k=v ...]

The dataset is generated under data/shapes/ on first use (no download); logs and checkpoints go to the work
dir (default work_dirs/demo). Exit code 0 only when training and the COCO evaluation finished; otherwise a
one-line reason (and where the log is) on stderr, exit code 1 (2 for a bad command line).
"""
import argparse
import os.path as osp
import sys
import time
import traceback
from typing import Dict, List, Optional

from mmengine.config import DictAction
from mmengine.hooks import Hook
from mmengine.runner import Runner

import mmbasis  # noqa: F401  (registers modules, installs the checkpoint allowlist)
from mmbasis.datasets import generate_shapes_for_config
from mmbasis.utils import get_config_path
from mmbasis.utils.cli import load_config

DEFAULT_CONFIG = 'shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'
MAIN_METRIC = 'coco/bbox_mAP'


class _KeepMetrics(Hook):
    """Remembers the last validation metrics and the regulariser loss of every iteration."""
    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self.metrics: Dict[str, float] = {}
        self.loss_orth: List[float] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs and 'loss_orth' in outputs:
            value = outputs['loss_orth']
            self.loss_orth.append(float(value.detach() if hasattr(value, 'detach') else value))

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = dict(metrics or {})


def _fail(message: str, log_file: Optional[str] = None) -> int:
    where = f' (full log: {log_file})' if log_file and osp.isfile(log_file) else ''
    print(f'demo failed: {message}{where}', file=sys.stderr)
    return 1


def _last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint mmengine recorded last in ``work_dir/last_checkpoint`` (None if there is none)."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint'), encoding='utf-8') as f:
            path = f.read().strip()
    except OSError:
        return None
    return path if osp.isfile(path) else None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=None, help=f'config (default: configs/{DEFAULT_CONFIG})')
    parser.add_argument('--work-dir', default='work_dirs/demo', help='logs and checkpoints (default work_dirs/demo)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='config overrides, key=value (e.g. train_cfg.max_epochs=2)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config = args.config or get_config_path(DEFAULT_CONFIG)
        cfg = load_config(config, args.cfg_options, args.work_dir, 'none')
        t0 = time.time()
        folders = generate_shapes_for_config(cfg)
        print(f'demo: dataset ready in {time.time() - t0:.1f} s: {", ".join(folders) or "(no shapes dataset)"}')
    except SystemExit as e:  # load_config's message for a missing config file
        return _fail(str(e).removeprefix('error: '))
    except (OSError, ValueError, TypeError, KeyError) as e:  # bad config, existing data that differs, ...
        return _fail(f'{type(e).__name__}: {e}')

    keep = _KeepMetrics()
    log_file = None
    t0 = time.time()
    try:
        runner = Runner.from_cfg(cfg)
        log_file = osp.join(runner.log_dir, f'{runner.timestamp}.log')
        runner.register_hook(keep)
        runner.train()
    except KeyboardInterrupt:
        return _fail('interrupted', log_file)
    except Exception as e:  # noqa: BLE001  (report any failure in one line, traceback above it)
        traceback.print_exc()
        return _fail(f'{type(e).__name__}: {e}', log_file)
    minutes = (time.time() - t0) / 60

    if MAIN_METRIC not in keep.metrics:
        got = ', '.join(sorted(keep.metrics)) or 'no evaluation'
        return _fail(f'training finished but no {MAIN_METRIC} was computed (got: {got}); the last epoch must run '
                     'the CocoMetric validation: check train_cfg.val_interval and val_evaluator', log_file)
    ckpt = _last_checkpoint(cfg.work_dir)
    print('\n==== mmbasis demo ====')
    print(f'config      : {config}')
    print(f'train+eval  : {minutes:.1f} min on this machine')
    if keep.loss_orth:
        print(f'loss_orth   : {keep.loss_orth[0]:.3e} (first iteration) -> {keep.loss_orth[-1]:.3e} (last)')
    for key in (MAIN_METRIC, 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        if key in keep.metrics:
            print(f'{key:<18}: {keep.metrics[key]:.3f}')
    print(f'checkpoint  : {ckpt or "(none saved; check default_hooks.checkpoint)"}')
    print(f'log         : {log_file}')
    if ckpt:
        print(f'evaluate again with: python tools/test.py {config} {ckpt}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
