"""Shared pieces of the command-line tools (``tools/train.py``, ``tools/test.py``, demo, analysis tools).

The flags and their semantics are mmdet 3.3's ``tools/train.py`` / ``tools/test.py`` ones, so a command
line written for mmdet works unchanged with ours.
"""

import argparse
import os
import os.path as osp
import sys
import threading
import time
from typing import Callable, Optional

from mmengine.config import Config, DictAction

from .deprecation import forward_module

# mmengine's Config.fromfile is not thread-safe: resolving a `mmdet::` base calls pkg_resources, which raises
# TypeError when two threads look up a distribution at once (seen when the sharing study starts two runs).
_CONFIG_LOCK = threading.Lock()

# moved to mmbasis.compat.distributed (they work around mmengine's and torch's distributed set-up)
__getattr__ = forward_module(
    __name__, dict.fromkeys(('setup_cpu_distributed', 'shutdown_distributed', 'slurm_environment'), 'mmbasis.compat')
)


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
    """``Config.fromfile(config)`` with ``cfg_options`` merged; ``FileNotFoundError`` naming a missing file.

    Safe to call from several threads at once (the parsing is serialised).
    """
    if not osp.isfile(config):
        raise FileNotFoundError(
            f'config file {config!r} does not exist (configs shipped with mmbasis live under '
            'configs/, e.g. configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py)'
        )
    with _CONFIG_LOCK:
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


def run_tiling(tool: str, make: Callable[[], object], errors: tuple = (OSError, ValueError, RuntimeError)) -> int:
    """Run ``make()`` (a tiling that returns a ``TiledVOC``) for the command ``tool``: its summary and time, or one
    error line (a refused annotation, or one of ``errors``); the exit status."""
    from mmbasis.datasets.voc_xml import VOCAnnotationError

    t0 = time.time()
    try:
        result = make()
    except VOCAnnotationError as e:
        print(f'{tool}: refused annotation: {e}', file=sys.stderr)
        return 1
    except errors as e:
        print(f'{tool}: error: {e}', file=sys.stderr)
        return 1
    print('\n'.join(result.summary()))
    print(f'{tool}: ready in {time.time() - t0:.1f} s')
    return 0


def tile_args(args: argparse.Namespace) -> dict:
    """The ``make_tiled_voc`` keyword arguments of flags added by :func:`add_tile_args`."""
    keys = ('tile_size', 'train_overlap', 'min_visible', 'below_min_visible', 'jpeg_quality', 'max_tiles')
    return {k: getattr(args, k) for k in keys}
