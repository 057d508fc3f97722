"""The demo config shrunk for tests: 64x64 images, 4 train / 2 val images, batch 2, a narrow backbone."""

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from tests.helpers import load_tool  # noqa: F401  (re-exported for the tool tests)

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(REPO / 'configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py')


def tiny_options(data_root: str, max_epochs: int = 1) -> List[str]:
    """``--cfg-options`` for a run of ``max_epochs`` epochs of 2 iterations each on a private data root."""
    size = 'scale=(64,64)'
    return [
        f'train_dataloader.dataset.data_root={data_root}',
        'train_dataloader.dataset.num_images=4',
        'train_dataloader.dataset.img_size=64',
        'train_dataloader.batch_size=2',
        f'val_dataloader.dataset.data_root={data_root}',
        'val_dataloader.dataset.num_images=2',
        'val_dataloader.dataset.img_size=64',
        f'test_dataloader.dataset.data_root={data_root}',
        'test_dataloader.dataset.num_images=2',
        'test_dataloader.dataset.img_size=64',
        f'val_evaluator.ann_file={data_root}/val/annotation.json',
        f'test_evaluator.ann_file={data_root}/val/annotation.json',
        f'train_dataloader.dataset.pipeline.2.{size}',
        f'val_dataloader.dataset.pipeline.1.{size}',
        f'test_dataloader.dataset.pipeline.1.{size}',
        f'train_cfg.max_epochs={max_epochs}',
        f'train_cfg.val_interval={max_epochs}',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
        'model.backbone.base_channels=16',
        'model.backbone.shared_rank=4',
        'model.neck.in_channels=[16,32,64,128]',
        'param_scheduler.0.end=2',
        # an untrained detector may score every box below mmdet's 0.05: keep them all, so COCO metrics exist
        'model.test_cfg.rcnn.score_thr=0.0',
    ]


def run(
    args: List[str], cwd: Path = REPO, expect_ok: bool = True, env: Optional[dict] = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``python *args`` (or a ``bash`` script) in ``cwd``; assert the exit code when ``expect_ok``."""
    full_env = dict(os.environ, PYTHONWARNINGS='ignore', **(env or {}))
    cmd = args if args[0] == 'bash' else [sys.executable] + args
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if expect_ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc
