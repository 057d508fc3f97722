"""The main job on the embedded default: train a shared-filter-basis Faster R-CNN with the orthogonality
regulariser on the generated shapes dataset, then report its COCO bbox metrics.

    python tools/demo.py [--config CONFIG] [--work-dir DIR] [--cfg-options k=v ...]

The dataset is generated under data/shapes/ on first use (no download); logs and checkpoints go to the work
dir (default work_dirs/demo). The summary compares the backbone's and the detector's parameters with the plain
counterpart of the same config, gives the wall time and the COCO metrics, and names a PNG grid of predictions
on validation images drawn with mmdet's visualiser. The config fixes its seed (``randomness``), so the same
machine gives the same numbers; ``--cfg-options randomness.seed=N`` runs another seed. Exit code 0 only when
training and the COCO evaluation finished; otherwise a one-line reason (and where the log is) on stderr, exit
code 1 (2 for a bad command line).
"""

import argparse
import os.path as osp
import sys
import time
import traceback
from typing import Dict, List, Optional

import numpy as np
import torch
from mmdet.registry import MODELS
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import mmbasis  # noqa: F401  (registers modules, installs the checkpoint allowlist)
from mmbasis.datasets import generate_shapes_for_config
from mmbasis.models.archs import plain_counterpart
from mmbasis.utils import get_config_path
from mmbasis.utils.cli import load_config

DEFAULT_CONFIG = 'shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'
MAIN_METRIC = 'coco/bbox_mAP'
GRID_IMAGES = 6


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


def parameter_comparison(cfg: Config) -> Dict[str, int]:
    """Backbone and detector parameters of ``cfg`` and of the same config with the plain counterpart backbone."""
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    counts = {}
    for kind, backbone in (('shared', cfg.model.backbone), ('plain', plain_counterpart(cfg.model.backbone))):
        with torch.device('meta'):  # shapes only: no memory, no initialisation
            model = MODELS.build(dict(cfg.model, backbone=backbone))
        counts[f'{kind}_backbone'] = sum(p.numel() for p in model.backbone.parameters())
        counts[f'{kind}_detector'] = sum(p.numel() for p in model.parameters())
    return counts


def prediction_grid(runner: Runner, cfg: Config, path: str, score_thr: float = 0.3) -> Optional[str]:
    """Predictions of the trained detector on the first validation images, drawn by mmdet's visualiser, in a grid."""
    import mmcv
    from mmdet.apis import inference_detector
    from mmdet.visualization import DetLocalVisualizer

    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    model.cfg = cfg  # inference_detector reads the test pipeline from it
    model.eval()
    dataset = runner.val_dataloader.dataset
    visualizer = DetLocalVisualizer(name=f'mmbasis_demo_{time.time_ns()}')
    visualizer.dataset_meta = dataset.metainfo
    tiles = []
    for i in range(min(GRID_IMAGES, len(dataset))):
        img_path = dataset.get_data_info(i)['img_path']
        result = inference_detector(model, img_path)
        image = mmcv.imread(img_path, channel_order='rgb')
        visualizer.add_datasample(
            f'val_{i}', image, data_sample=result, draw_gt=False, show=False, pred_score_thr=score_thr
        )
        tiles.append(mmcv.imrescale(visualizer.get_image(), 2.0))
    if not tiles:
        return None
    h, w = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, w - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % 3)
    rows = [np.concatenate(tiles[r : r + 3], axis=1) for r in range(0, len(tiles), 3)]
    mmcv.imwrite(mmcv.rgb2bgr(np.concatenate(rows, axis=0)), path, auto_mkdir=True)
    return path


def _relative(path: str) -> str:
    rel = osp.relpath(path)
    return rel if not rel.startswith('..') else path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=None, help=f'config (default: configs/{DEFAULT_CONFIG})')
    parser.add_argument('--work-dir', default='work_dirs/demo', help='logs and checkpoints (default work_dirs/demo)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='config overrides, key=value (e.g. train_cfg.max_epochs=2)'
    )
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
    counts = parameter_comparison(cfg)
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
        return _fail(
            f'training finished but no {MAIN_METRIC} was computed (got: {got}); the last epoch must run '
            'the CocoMetric validation: check train_cfg.val_interval and val_evaluator',
            log_file,
        )
    ckpt = _last_checkpoint(cfg.work_dir)
    grid = prediction_grid(runner, cfg, osp.join(cfg.work_dir, 'predictions.png'))

    def versus(kind: str) -> str:
        shared, plain = counts[f'shared_{kind}'], counts[f'plain_{kind}']
        return f'{shared:,} vs {plain:,} with the plain backbone ({100 * (shared - plain) / plain:+.1f} %)'

    plain_type = plain_counterpart(cfg.model.backbone)['type']
    print('\n==== mmbasis demo ====')
    print(f'config      : {_relative(config)}')
    print(f'seed        : {cfg.get("randomness", {}).get("seed")}')
    print(f'backbone    : {cfg.model.backbone.type}, parameters {versus("backbone")} ({plain_type})')
    print(f'detector    : parameters {versus("detector")}')
    print(f'train+eval  : {minutes:.1f} min wall time on this machine')
    if keep.loss_orth:
        print(f'loss_orth   : {keep.loss_orth[0]:.3e} (first iteration) -> {keep.loss_orth[-1]:.3e} (last)')
    for key in (MAIN_METRIC, 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        if key in keep.metrics:
            print(f'{key:<18}: {keep.metrics[key]:.3f}')
    print(f'predictions : {_relative(grid) if grid else "(no validation images)"}')
    print(f'checkpoint  : {_relative(ckpt) if ckpt else "(none saved; check default_hooks.checkpoint)"}')
    print(f'log         : {_relative(log_file)}')
    if ckpt:
        python = _relative(sys.executable)
        print(f'evaluate again with: {python} tools/test.py {_relative(config)} {_relative(ckpt)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
