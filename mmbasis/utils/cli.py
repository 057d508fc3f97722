"""Shared pieces of the command-line tools (``tools/train.py``, ``tools/test.py``, demo, analysis tools).

The flags and their semantics are mmdet 3.3's ``tools/train.py`` / ``tools/test.py`` ones, so a command
line written for mmdet works unchanged with ours.
"""

import argparse
import gc
import os
import os.path as osp
import subprocess
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, DictAction


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The flags every mmdet tool has: --work-dir, --cfg-options, --launcher, --local_rank."""
    parser.add_argument('--work-dir', help='the dir to save logs and models (default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs, e.g. train_cfg.max_epochs=2 '
        'or key="[a,b]" for lists (no white space)',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (pytorch for torchrun / tools/dist_*.sh)',
    )
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def read_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    """``Config.fromfile(config)`` with ``cfg_options`` merged; ``FileNotFoundError`` naming a missing file."""
    if not osp.isfile(config):
        raise FileNotFoundError(
            f'config file {config!r} does not exist (configs shipped with mmbasis live under '
            'configs/, e.g. configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py)'
        )
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def load_config(
    config: str, cfg_options: Optional[dict], work_dir: Optional[str], launcher: str, local_rank: int = 0
) -> Config:
    """Load ``config`` (clear error when missing), apply overrides, set ``work_dir`` and ``launcher``.

    Like mmdet's tools: ``LOCAL_RANK`` is set from ``local_rank`` unless the launcher already set it; the
    work dir is, by priority, ``work_dir``, the config's ``work_dir``, ``./work_dirs/<config name>``.

    Raises:
        SystemExit: with a message naming the path when ``config`` is not a file.
    """
    try:
        cfg = read_config(config, cfg_options)
    except FileNotFoundError as e:
        raise SystemExit(f'error: {e}') from None
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def slurm_environment() -> dict:
    """The ``torch.distributed`` environment of a task started by ``srun``, as mmengine's slurm launcher derives it.

    ``RANK`` = ``SLURM_PROCID``, ``WORLD_SIZE`` = ``SLURM_NTASKS``, ``LOCAL_RANK`` = ``SLURM_LOCALID``;
    ``MASTER_PORT`` and ``MASTER_ADDR`` are kept when set, else 29500 and the first host of ``SLURM_NODELIST``
    (``scontrol show hostnames``). Raises ``SystemExit`` naming what is missing.
    """
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST') if k not in os.environ]
    if missing:
        raise SystemExit(
            f'error: --launcher slurm needs the environment srun sets ({", ".join(missing)} missing): '
            'start with tools/slurm_train.sh / tools/slurm_test.sh or srun'
        )
    env = dict(
        RANK=os.environ['SLURM_PROCID'],
        WORLD_SIZE=os.environ['SLURM_NTASKS'],
        LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'),
        MASTER_PORT=os.environ.get('MASTER_PORT', '29500'),
    )
    if 'MASTER_ADDR' in os.environ:
        env['MASTER_ADDR'] = os.environ['MASTER_ADDR']
    else:
        nodes = os.environ['SLURM_NODELIST']
        try:
            proc = subprocess.run(['scontrol', 'show', 'hostnames', nodes], capture_output=True, text=True, timeout=60)
        except OSError as e:
            raise SystemExit(
                f'error: cannot run scontrol to find the first node of {nodes!r} ({e}); set MASTER_ADDR'
            ) from None
        hosts = proc.stdout.split()
        if proc.returncode != 0 or not hosts:
            raise SystemExit(
                f'error: `scontrol show hostnames {nodes}` failed ({proc.stderr.strip()!r}); set MASTER_ADDR'
            )
        env['MASTER_ADDR'] = hosts[0]
    return env


def setup_cpu_distributed(cfg: Config) -> bool:
    """Make ``--launcher pytorch`` / ``slurm`` work on a machine without CUDA (gloo instead of nccl); no-op otherwise.

    mmengine 0.10.7 always calls ``torch.cuda.set_device`` when it initialises a ``pytorch`` or ``slurm`` launch
    and wraps the model in DDP with ``device_ids=[LOCAL_RANK]``; both fail without a GPU. Here the process group
    is initialised with gloo from torchrun's environment (or, for slurm, from srun's: :func:`slurm_environment`,
    exported like mmengine does) and mmengine then skips its own initialisation; the wrapper gets
    ``device_ids=None`` (CPU DDP). Returns True when it did so.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher not in ('pytorch', 'slurm') or torch.cuda.is_available():
        return False
    if launcher == 'slurm':
        os.environ.update(slurm_environment())
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise SystemExit(
            f'error: --launcher pytorch needs the environment torchrun sets ({", ".join(missing)} '
            'missing): start with tools/dist_train.sh / tools/dist_test.sh or torchrun'
        )
    # assigned back: ``Config.setdefault`` returns a plain dict that a missing ``env_cfg`` is not stored as
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}), backend='gloo')
    cfg.env_cfg = dict(cfg.get('env_cfg', {}), dist_cfg=dist_cfg)
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        torch_dist.init_process_group(
            backend='gloo', **({} if timeout is None else dict(timeout=timedelta(seconds=timeout)))
        )
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False),
    )
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True


def shutdown_distributed() -> None:
    """End a distributed run cleanly: wait for every rank, then destroy the default process group.

    Call it after the runner (and the DDP wrapper holding the group) has been released. Otherwise the
    gloo process group dies in the interpreter's exit, in whatever order the ranks reach it; with torch
    2.14 that intermittently aborts a rank that had finished its work ("terminate called without an
    active exception": a joinable native thread destroyed at exit). A no-op without a process group.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        gc.collect()  # drop the released DDP wrapper (and its reference to the group) now, not at exit
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def add_tile_args(parser: argparse.ArgumentParser) -> None:
    """The tiling flags of the dataset tools (``mmbasis.datasets.make_tiled_voc``'s arguments, same defaults)."""
    from mmbasis.datasets.voc_tiles import BELOW_MIN_VISIBLE, TILE_DEFAULTS

    d = TILE_DEFAULTS
    group = parser.add_argument_group('tiling (an existing folder made with other values is refused)')
    group.add_argument('--tile-size', type=int, default=d['tile_size'], help='square tile side in pixels (%(default)s)')
    group.add_argument(
        '--train-overlap',
        type=float,
        default=d['train_overlap'],
        help='overlap of neighbouring training tiles, fraction of the tile in [0, 1) (%(default)s; validation and '
        'test tiles never overlap: the last one is padded with black)',
    )
    group.add_argument(
        '--min-visible',
        type=float,
        default=d['min_visible'],
        help='a box cut by a tile border is kept when at least this fraction of its area is in the tile '
        '(%(default)s); it is clipped and marked truncated',
    )
    group.add_argument(
        '--below-min-visible',
        choices=BELOW_MIN_VISIBLE,
        default=d['below_min_visible'],
        help='what becomes of a cut box with less visible: kept marked difficult (ignored by VOC evaluation) or '
        'dropped (%(default)s)',
    )
    group.add_argument('--jpeg-quality', type=int, default=d['jpeg_quality'], help='JPEG quality 1-100 (%(default)s)')
    group.add_argument(
        '--max-tiles', type=int, help='keep only N tiles of each split, spread evenly over it (quick tests)'
    )


def tile_args(args: argparse.Namespace) -> dict:
    """The ``make_tiled_voc`` keyword arguments of flags added by :func:`add_tile_args`."""
    keys = ('tile_size', 'train_overlap', 'min_visible', 'below_min_visible', 'jpeg_quality', 'max_tiles')
    return {k: getattr(args, k) for k in keys}
