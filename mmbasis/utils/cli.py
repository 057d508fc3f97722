"""Shared pieces of the command-line tools (``tools/train.py``, ``tools/test.py``, analysis tools)."""
import argparse
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The flags every mmdet tool has: --work-dir, --cfg-options, --launcher, --local_rank."""
    parser.add_argument('--work-dir', help='the dir to save logs and models (default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs, e.g. train_cfg.max_epochs=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher (pytorch for torchrun / tools/dist_*.sh)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(config: str, cfg_options: Optional[dict], work_dir: Optional[str], launcher: str) -> Config:
    """Load ``config`` (clear error when missing), apply overrides, set ``work_dir`` and ``launcher``."""
    if not osp.isfile(config):
        raise SystemExit(f'error: config file {config!r} does not exist (configs shipped with mmbasis live under '
                         f'configs/, e.g. configs/demo/faster-rcnn_r18-s16u1_slim-fpn_shapes.py)')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = '0'
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg
