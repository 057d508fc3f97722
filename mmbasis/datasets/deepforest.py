"""Real annotated aerial images: two NEON scenes of the ``deepforest`` package, tiled into a Pascal VOC folder.

The ``deepforest`` wheel on PyPI (version 2.1.0, MIT licence, "Copyright (c) 2019, Ben Weinstein") ships under
``deepforest/data/`` RGB images of the National Ecological Observatory Network's airborne observation platform
with tree crowns annotated as boxes in Pascal VOC XML (one class, ``Tree``). Two scenes of the Yellowstone site
(YELL, 2019) are used: ``2019_YELL_2_528000_4978000_image_crop2.png`` (2299x2472, 574 trees) for training and
``2019_YELL_2_541000_4977000_image_crop.png`` (1249x1035, 279 trees) for validation and test (the same tiles
are listed in ``val.txt`` and ``test.txt``, as mmdet's VOC configs validate and test on VOC2007 test).

:func:`fetch_deepforest_wheel` gets the wheel with the ordinary package client (``pip download --no-deps``,
version pinned; nothing is installed), checks its SHA-256 and keeps it in the per-user cache of the project's
set-up (``$MMBASIS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mmbasis``, else ``~/.cache/mmbasis``; the hash is checked
again at every use). :func:`make_deepforest_voc` reads only the two images, their XML files and the licence from
the wheel (it is a zip file) and writes ``DATA_ROOT/YELL2019/`` with :func:`mmbasis.datasets.make_tiled_voc`
(its arguments and defaults are documented there), plus the package's ``LICENSE`` and a ``README.txt``.
:class:`DeepForestTreesDataset` does that on first use, so a config needs no separate data step.
"""

import hashlib
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict, Optional

from mmdet.datasets import VOCDataset
from mmdet.registry import DATASETS

from .voc_tiles import TILE_DEFAULTS, TiledVOC, VOCSource, make_tiled_voc

PACKAGE, VERSION = 'deepforest', '2.1.0'
WHEEL = 'deepforest-2.1.0-py3-none-any.whl'
WHEEL_SHA256 = '8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54'
LICENSE_MEMBER = 'deepforest-2.1.0.dist-info/licenses/LICENSE'
TRAIN_IMAGE = '2019_YELL_2_528000_4978000_image_crop2'
VAL_IMAGE = '2019_YELL_2_541000_4977000_image_crop'
TREE_CLASSES = ('Tree',)
FOLDER = 'YELL2019'
README = f"""Tiles of two airborne RGB scenes (NEON site YELL, Yellowstone, 2019) with tree-crown boxes in Pascal VOC
XML, from the {PACKAGE} {VERSION} wheel on PyPI ({WHEEL}, sha256 {WHEEL_SHA256}), files
deepforest/data/{TRAIN_IMAGE}.png/.xml (train) and deepforest/data/{VAL_IMAGE}.png/.xml (val and test).
The package states its licence as MIT ({LICENSE_MEMBER}, copied here as LICENSE).
Made by mmbasis (mmbasis/datasets/deepforest.py); manifest.json holds the tiling arguments and counts.
"""


def cache_root() -> str:
    """The per-user cache of the project's set-up (the same rule as tools/bootstrap.sh)."""
    if os.environ.get('MMBASIS_CACHE_DIR'):
        return os.environ['MMBASIS_CACHE_DIR']
    return osp.join(os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'), 'mmbasis')


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def fetch_deepforest_wheel(cache: Optional[str] = None) -> str:
    """Path of the verified ``deepforest`` 2.1.0 wheel in ``cache/downloads/`` (downloaded once with pip).

    Raises ``RuntimeError`` when pip fails (its last output lines are in the message) and ``ValueError`` when a
    file's SHA-256 is not the pinned one (a cached file with another hash is left for the user to inspect).
    """
    folder = osp.join(cache or cache_root(), 'downloads')
    path = osp.join(folder, WHEEL)
    if not osp.isfile(path):
        os.makedirs(folder, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix='.deepforest-', dir=folder)
        try:
            cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:']
            cmd += ['--ignore-requires-python', '--disable-pip-version-check', '--no-input', '-d', tmp]
            proc = subprocess.run([*cmd, f'{PACKAGE}=={VERSION}'], capture_output=True, text=True)
            got = osp.join(tmp, WHEEL)
            if proc.returncode != 0 or not osp.isfile(got):
                tail = '\n'.join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
                raise RuntimeError(
                    f'`pip download {PACKAGE}=={VERSION}` did not give {WHEEL} (is PyPI reachable?):\n{tail}'
                )
            if _sha256_file(got) != WHEEL_SHA256:
                raise ValueError(f'the downloaded {WHEEL} has SHA-256 {_sha256_file(got)}, not {WHEEL_SHA256}')
            os.replace(got, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    digest = _sha256_file(path)
    if digest != WHEEL_SHA256:
        raise ValueError(f'{path} has SHA-256 {digest}, not the pinned {WHEEL_SHA256}; delete it to download again')
    return path


def deepforest_sources(wheel: str) -> Dict[str, VOCSource]:
    """The two scenes (image and XML bytes) read from the wheel; nothing else is extracted."""
    with zipfile.ZipFile(wheel) as z:
        sources = {}
        for name in (TRAIN_IMAGE, VAL_IMAGE):
            image, xml = f'deepforest/data/{name}.png', f'deepforest/data/{name}.xml'
            sources[name] = VOCSource(z.read(image), z.read(xml), osp.basename(image), osp.basename(xml))
    return sources


def make_deepforest_voc(data_root: str = 'data/deepforest_trees', cache: Optional[str] = None, **tile_args) -> TiledVOC:
    """Write (or reuse, or refuse: see :func:`make_tiled_voc`) ``data_root/YELL2019/`` from the two scenes.

    ``tile_args`` are :func:`make_tiled_voc`'s tiling arguments (``tile_size``, ``train_overlap``,
    ``min_visible``, ``below_min_visible``, ``jpeg_quality``, ``max_tiles``). The wheel is fetched only when the
    folder has to be written.
    """
    unknown = set(tile_args) - set(TILE_DEFAULTS)
    if unknown:
        raise ValueError(f'unknown tiling arguments {sorted(unknown)}; allowed: {sorted(TILE_DEFAULTS)}')
    if not isinstance(data_root, str) or not data_root:
        raise ValueError(f'data_root={data_root!r} is not allowed: it must be a non-empty folder path')
    licence = {}

    def load() -> Dict[str, VOCSource]:
        wheel = fetch_deepforest_wheel(cache)
        with zipfile.ZipFile(wheel) as z:
            licence['LICENSE'] = z.read(LICENSE_MEMBER)
        return deepforest_sources(wheel)

    origin = dict(package=f'{PACKAGE}=={VERSION}', wheel=WHEEL, wheel_sha256=WHEEL_SHA256, licence='MIT')
    return make_tiled_voc(
        osp.join(data_root, FOLDER),
        dict(train=[TRAIN_IMAGE], val=[VAL_IMAGE], test=[VAL_IMAGE]),
        load,
        TREE_CLASSES,
        origin,
        extra_files=lambda: dict(licence, **{'README.txt': README.encode()}),  # called after load()
        **tile_args,
    )


@DATASETS.register_module()
class DeepForestTreesDataset(VOCDataset):
    """mmdet's ``VOCDataset`` on the tiled deepforest scenes, which it makes on first use.

    Args:
        split (str): ``'train'``, ``'val'`` or ``'test'`` (``ImageSets/Main/<split>.txt``).
        data_root (str): the folder holding ``YELL2019/``.
        tile_size, train_overlap, min_visible, below_min_visible, jpeg_quality, max_tiles: tiling arguments of
            :func:`mmbasis.datasets.make_tiled_voc` (the train and val datasets of a config must give the same).
        **kwargs: ``VOCDataset`` arguments; ``ann_file`` and ``data_prefix`` default to the split's.
    """

    METAINFO = dict(classes=TREE_CLASSES, palette=[(0, 170, 60)])

    def __init__(
        self,
        split: str = 'train',
        data_root: str = 'data/deepforest_trees/',
        tile_size: int = TILE_DEFAULTS['tile_size'],
        train_overlap: float = TILE_DEFAULTS['train_overlap'],
        min_visible: float = TILE_DEFAULTS['min_visible'],
        below_min_visible: str = TILE_DEFAULTS['below_min_visible'],
        jpeg_quality: int = TILE_DEFAULTS['jpeg_quality'],
        max_tiles: Optional[int] = None,
        **kwargs,
    ) -> None:
        tiling = {k: v for k, v in locals().items() if k in TILE_DEFAULTS}  # the tiling arguments, as given
        if split not in ('train', 'val', 'test'):
            raise ValueError(f"split={split!r} is not allowed: choose one of ('train', 'val', 'test')")
        make_deepforest_voc(data_root, **tiling)
        kwargs.setdefault('ann_file', f'{FOLDER}/ImageSets/Main/{split}.txt')
        kwargs.setdefault('data_prefix', dict(sub_data_root=f'{FOLDER}/'))
        super().__init__(data_root=data_root, **kwargs)
