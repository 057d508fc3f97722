"""Tile large Pascal VOC-annotated images into a VOC folder that mmdet's ``VOCDataset`` reads unchanged.

For aerial or satellite scenes with many small objects: each source image (any size, any format OpenCV reads)
with its VOC XML becomes square tiles with their own annotations, written as::

    FOLDER/JPEGImages/<tile id>.jpg       tiles as JPEG (VOCDataset reads '<id>.jpg')
    FOLDER/Annotations/<tile id>.xml      VOC annotations of the tiles
    FOLDER/ImageSets/Main/{train,val,test}.txt
    FOLDER/manifest.json                  the arguments, the sources' hashes, counts, tiles and annotation fixes

Tile ids are ``<image stem>_x<left>_y<top>`` (pixel offsets in the source image, 5 digits). An mmdet config reads
split S with ``data_root=<parent of FOLDER>``, ``ann_file='<FOLDER name>/ImageSets/Main/S.txt'``,
``data_prefix=dict(sub_data_root='<FOLDER name>/')`` and ``metainfo=dict(classes=...)``. (A FOLDER name with
'VOC2007' or 'VOC2012' in it makes mmdet's VOCMetric print the 20 VOC class names, so use another name.)

The arguments, with their defaults:

* ``tile_size=400``: side of the square tiles in pixels.
* ``train_overlap=0.5``: training tiles start every ``round(tile_size * (1 - train_overlap))`` pixels (200 by
  default: a tree of up to 200 px lies whole in at least one tile), and the last tile of a row or column is
  shifted inward to end at the image border (it overlaps its neighbour more). Validation and test tiles never
  overlap: they start every ``tile_size`` pixels and the last one of a row or column reaches past the border,
  its outside part padded with black (0); every pixel of the image is in exactly one tile. An image smaller than a
  tile becomes one padded tile.
* ``min_visible=0.5`` and ``below_min_visible='difficult'``: a box cut by a tile border is clipped to the tile
  and marked ``truncated``. It is kept as it is when at least ``min_visible`` of its area (in pixels) is inside the
  tile; a smaller visible part is kept marked ``difficult`` (mmdet's VOC metric ignores it, and mmdet does not
  train on it) or, with ``below_min_visible='drop'``, dropped. A visible part 1 pixel wide or high is always dropped
  (zero width for mmdet).
* ``jpeg_quality=95``: the tiles are JPEG (mmdet's VOCDataset only reads ``.jpg``), encoded by OpenCV with this
  quality, baseline, without chroma subsampling (4:4:4: small objects keep their colour edges; on the deepforest
  validation scene quality 95 gives 42.0 dB PSNR against the PNG source, 1.5 grey levels mean error, a third of
  the PNG's size; the usual 4:2:0 stays under 35.1 dB even at quality 100).
* ``max_tiles=None``: keep only N tiles of each split, spread evenly over its n tiles in order (sources in the
  given order, each in rows from the top, left to right; the tiles at positions ``(2i + 1) n // 2N``): for quick
  tests.

Source annotations are checked box by box (:mod:`mmbasis.datasets.voc_xml`: bad boxes are fixed by stated rules
and reported, or refused). The folder is written in a temporary folder next to it and moved into place with one
``os.rename``; an existing folder is reused when its manifest has the same arguments and origin (nothing is
written), and refused (``FileExistsError``) otherwise. The same arguments give byte-identical files.
"""

import hashlib
import json
import logging
import os
import os.path as osp
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmengine.logging import print_log

from ..utils.misc import check_choice, check_int
from .voc_xml import AnnotationFix, VOCAnnotationError, VOCObject, read_objects, read_size, tile_annotation

SPLITS = ('train', 'val', 'test')
BELOW_MIN_VISIBLE = ('difficult', 'drop')
TILE_DEFAULTS = dict(
    tile_size=400, train_overlap=0.5, min_visible=0.5, below_min_visible='difficult', jpeg_quality=95, max_tiles=None
)
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class VOCSource:
    """One source image and its VOC annotation, as bytes; ``*_file`` name them in reports and the manifest."""

    image: bytes
    annotation: bytes
    image_file: str
    annotation_file: str

    @classmethod
    def from_files(cls, image: str, annotation: str) -> 'VOCSource':
        for path in (image, annotation):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{path} does not exist')
        with open(image, 'rb') as f, open(annotation, 'rb') as g:
            return cls(f.read(), g.read(), osp.basename(image), osp.basename(annotation))

    @property
    def stem(self) -> str:
        """The tile id prefix: the image file's stem, characters other than ``A-Za-z0-9._-`` replaced by ``_``."""
        return re.sub(r'[^A-Za-z0-9._-]', '_', osp.splitext(self.image_file)[0])


@dataclass
class TiledVOC:
    """What :func:`make_tiled_voc` made (or found): per split the tile ids and counts, and the fixes."""

    folder: str
    created: bool
    splits: Dict[str, List[str]]
    counts: Dict[str, Dict[str, int]]
    fixes: List[str] = field(default_factory=list)

    def summary(self) -> List[str]:
        """Lines for a tool to print: the folder, each split's counts, and the fixes of a reused folder (a new
        folder's fixes were logged while it was made)."""
        lines = [f'annotation fixed (recorded in the manifest): {fix}' for fix in ([] if self.created else self.fixes)]
        lines.append(f'{self.folder}: {"written" if self.created else "already there with the same arguments"}')
        for split, c in self.counts.items():
            lines.append(
                f'  {split:5s}: {c["tiles"]} tiles ({c["empty_tiles"]} without boxes), {c["boxes"]} boxes '
                f'({c["truncated"]} cut by a tile border, {c["difficult"]} of them difficult)'
            )
        lines.append(f'  annotation fixes: {len(self.fixes)}')
        return lines


def check_tile_args(
    tile_size: int, train_overlap: float, min_visible: float, below_min_visible: str, jpeg_quality: int, max_tiles
) -> None:
    """``ValueError`` naming the first argument outside its range (see the module docstring)."""
    check_int('tile_size', tile_size, 32, 8192)
    for name, value, ok, allowed in (
        ('train_overlap', train_overlap, lambda v: 0 <= v < 1, 'a number in [0, 1)'),
        ('min_visible', min_visible, lambda v: 0 < v <= 1, 'a number in (0, 1]'),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ValueError(f'{name}={value!r} is not allowed: it must be {allowed}')
    if round(tile_size * (1 - train_overlap)) < 1:
        raise ValueError(f'train_overlap={train_overlap!r} leaves a training stride under 1 pixel')
    check_choice('below_min_visible', below_min_visible, BELOW_MIN_VISIBLE)
    check_int('jpeg_quality', jpeg_quality, 1, 100)
    if max_tiles is not None:
        check_int('max_tiles', max_tiles, 1)


def tile_origins(length: int, tile: int, stride: int, shift_last: bool) -> List[int]:
    """Start offsets of the tiles along one image side of ``length`` pixels.

    Tiles start every ``stride`` pixels while they end inside the image; then one more tile covers the rest:
    shifted inward to end at the border (``shift_last``), else starting at the next stride and reaching past the
    border (padded). A side not longer than a tile has one tile at 0.
    """
    starts = []
    start = 0
    while start + tile < length:
        starts.append(start)
        start += stride
    starts.append(max(length - tile, 0) if shift_last else start)
    return starts


def cut(obj: VOCObject, left: int, top: int, tile: int, min_visible: float, below: str) -> Optional[VOCObject]:
    """``obj`` (a box inside its image) in the coordinates of the tile at ``(left, top)``, or None when dropped."""
    xmin, ymin, xmax, ymax = obj.box
    cx1, cy1 = max(xmin, left + 1), max(ymin, top + 1)
    cx2, cy2 = min(xmax, left + tile), min(ymax, top + tile)
    if cx2 <= cx1 or cy2 <= cy1:  # outside, or a visible part of zero width for mmdet
        return None
    visible = (cx2 - cx1 + 1) * (cy2 - cy1 + 1) / ((xmax - xmin + 1) * (ymax - ymin + 1))
    box = (cx1 - left, cy1 - top, cx2 - left, cy2 - top)
    if visible == 1:
        return VOCObject(obj.name, box, obj.difficult, obj.truncated)
    if visible < min_visible and below == 'drop':
        return None
    return VOCObject(obj.name, box, obj.difficult or visible < min_visible, True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _image_size(source: VOCSource) -> Tuple[int, int]:
    """``(width, height)`` from the annotation's ``<size>`` (checked against the pixels later), else the image."""
    size = read_size(source.annotation, source.annotation_file)
    return size if size is not None else _decode(source).shape[1::-1]


def _decode(source: VOCSource) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(source.image, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise VOCAnnotationError(f'{source.image_file}: not an image OpenCV can read')
    return img


def _write_tiles(
    out: str, splits: Mapping[str, Sequence[str]], sources: Mapping[str, VOCSource], classes: Sequence[str], args: Dict
) -> Tuple[Dict[str, List[str]], Dict[str, Dict[str, int]], Dict[str, Dict], List[AnnotationFix]]:
    """Write the tiles of every split into ``out``; return per split the tile ids and counts, per source its
    description, and the fixes made to the source annotations."""
    size = args['tile_size']
    train_stride = round(size * (1 - args['train_overlap']))
    if not hasattr(cv2, 'IMWRITE_JPEG_SAMPLING_FACTOR'):
        raise RuntimeError(
            f'OpenCV {cv2.__version__} cannot write JPEG without chroma subsampling; use OpenCV >= 4.5.5'
        )
    encode = [cv2.IMWRITE_JPEG_QUALITY, args['jpeg_quality'], cv2.IMWRITE_JPEG_OPTIMIZE, 0]
    encode += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    tile_ids: Dict[str, List[str]] = {}
    counts: Dict[str, Dict[str, int]] = {}
    described: Dict[str, Dict] = {}
    fixes: List[AnnotationFix] = []
    for split, names in splits.items():
        ids = tile_ids[split] = []
        count = counts[split] = dict(tiles=0, empty_tiles=0, boxes=0, difficult=0, truncated=0)
        stride, shift = (train_stride, True) if split == 'train' else (size, False)
        places = []  # (source name, left, top) of every tile of the split, in order
        for name in names:
            width, height = _image_size(sources[name])
            lefts, tops = tile_origins(width, size, stride, shift), tile_origins(height, size, stride, shift)
            places += [(name, x, y) for y in tops for x in lefts]
        if args['max_tiles'] is not None and args['max_tiles'] < len(places):
            n, k = len(places), args['max_tiles']
            places = [places[(2 * i + 1) * n // (2 * k)] for i in range(k)]  # spread evenly over the split
        for name in names:
            source = sources[name]
            img = _decode(source)
            height, width = img.shape[:2]
            objects, found = read_objects(source.annotation, source.annotation_file, classes, width, height)
            if name not in described:
                fixes.extend(found)
                described[name] = dict(
                    image=source.image_file,
                    image_sha256=_sha256(source.image),
                    annotation=source.annotation_file,
                    annotation_sha256=_sha256(source.annotation),
                    width=width,
                    height=height,
                    objects=len(objects),
                )
            for left, top in [(x, y) for src, x, y in places if src == name]:
                tile_id = f'{source.stem}_x{left:05d}_y{top:05d}'
                crop = np.zeros((size, size, 3), np.uint8)  # black outside the image
                part = img[top : top + size, left : left + size]
                crop[: part.shape[0], : part.shape[1]] = part
                ok, jpeg = cv2.imencode('.jpg', crop, encode)
                if not ok:
                    raise OSError(f'OpenCV could not encode tile {tile_id} as JPEG')
                cuts = (cut(o, left, top, size, args['min_visible'], args['below_min_visible']) for o in objects)
                kept = [c for c in cuts if c is not None]
                with open(osp.join(out, 'JPEGImages', f'{tile_id}.jpg'), 'wb') as f:
                    f.write(jpeg.tobytes())
                with open(osp.join(out, 'Annotations', f'{tile_id}.xml'), 'wb') as f:
                    f.write(tile_annotation(args['folder'], f'{tile_id}.jpg', size, size, kept))
                ids.append(tile_id)
                count['tiles'] += 1
                count['empty_tiles'] += not kept
                count['boxes'] += len(kept)
                count['difficult'] += sum(o.difficult for o in kept)
                count['truncated'] += sum(o.truncated for o in kept)
        with open(osp.join(out, 'ImageSets', 'Main', f'{split}.txt'), 'w', encoding='utf-8') as f:
            f.write(''.join(f'{tile_id}\n' for tile_id in ids))
    return tile_ids, counts, described, fixes


def _flat(manifest: Dict) -> Dict:
    """``{'arguments': {'tile_size': 400}, 'format_version': 1}`` -> ``{'arguments.tile_size': 400, ...}``."""
    return {
        f'{k}.{i}' if isinstance(v, dict) else k: w
        for k, v in manifest.items()
        for i, w in (v.items() if isinstance(v, dict) else [(None, v)])
    }


def _check_existing(folder: str, wanted: Dict) -> Dict:
    path = osp.join(folder, 'manifest.json')
    try:
        with open(path, encoding='utf-8') as f:
            manifest = json.load(f)
        existing = {k: manifest[k] for k in wanted}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FileExistsError(
            f'{folder} exists but was not made by this tiler ({path}: {e}); move it away or choose another folder'
        ) from e
    if existing != wanted:
        old, new = _flat(existing), _flat(wanted)
        diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
        raise FileExistsError(
            f'{folder} was made with other arguments (existing, requested): {diff}; '
            'delete it to make it again, or choose another folder'
        )
    return manifest


def _result(folder: str, manifest: Dict, created: bool) -> TiledVOC:
    return TiledVOC(folder, created, manifest['tiles'], manifest['counts'], manifest['fixes'])


def make_tiled_voc(
    folder: str,
    splits: Mapping[str, Sequence[str]],
    sources: Union[Mapping[str, VOCSource], Callable[[], Mapping[str, VOCSource]]],
    classes: Sequence[str],
    origin: Mapping,
    tile_size: int = 400,
    train_overlap: float = 0.5,
    min_visible: float = 0.5,
    below_min_visible: str = 'difficult',
    jpeg_quality: int = 95,
    max_tiles: Optional[int] = None,
    extra_files: Union[None, Mapping[str, bytes], Callable[[], Mapping[str, bytes]]] = None,
) -> TiledVOC:
    """Write the tiled VOC ``folder`` unless it exists with the same arguments and origin.

    Args:
        folder: the VOC folder to write (its parent is the mmdet ``data_root``).
        splits: split name (``'train'``, ``'val'``, ``'test'``) -> names of ``sources`` in it. An image may be
            in val and test (the same tiles, listed in both) but not in train and another split.
        sources: name -> :class:`VOCSource`, or a function returning them (only called when writing).
        classes: the allowed class names; another name in a source annotation is refused.
        origin: JSON-able description of where the sources come from (e.g. their hashes); part of what an
            existing folder must match.
        extra_files: file name -> bytes written beside the manifest (e.g. the data's licence), or a function
            returning them (called after ``sources``).
        Tiling arguments: see the module docstring.

    Returns:
        :class:`TiledVOC` (``created`` False when an existing folder was reused). Raises ``ValueError`` for bad
        arguments, :class:`VOCAnnotationError` for refused annotations, ``FileExistsError`` for a folder made
        otherwise.
    """
    check_tile_args(tile_size, train_overlap, min_visible, below_min_visible, jpeg_quality, max_tiles)
    if not isinstance(folder, str) or not folder or osp.basename(osp.normpath(folder)) in ('', '.', '..'):
        raise ValueError(f'folder={folder!r} is not allowed: give the path of the VOC folder to write')
    if not splits or not set(splits) <= set(SPLITS):
        raise ValueError(f'splits={dict(splits)!r} is not allowed: use some of the splits {SPLITS}')
    for split, names in splits.items():
        if isinstance(names, str) or not names or len(set(names)) != len(names):
            raise ValueError(f'splits[{split!r}]={names!r} is not allowed: give a list of distinct source names')
    leaked = set(splits.get('train', ())) & {n for s, ns in splits.items() if s != 'train' for n in ns}
    if leaked:
        raise ValueError(f'{sorted(leaked)} would be in train and in val/test: use each image in one of them')
    if isinstance(classes, str) or not classes or len(set(classes)) != len(classes):
        raise ValueError(f'classes={classes!r} is not allowed: give a list of distinct class names')
    folder = osp.normpath(folder)
    name = osp.basename(folder)
    args = dict(
        folder=name,
        tile_size=tile_size,
        train_overlap=train_overlap,
        min_visible=min_visible,
        below_min_visible=below_min_visible,
        jpeg_quality=jpeg_quality,
        max_tiles=max_tiles,
        classes=list(classes),
        splits={s: list(splits[s]) for s in SPLITS if s in splits},
    )
    wanted = json.loads(json.dumps(dict(format_version=_FORMAT_VERSION, arguments=args, origin=dict(origin))))
    if osp.isdir(folder):
        return _result(folder, _check_existing(folder, wanted), created=False)

    loaded = sources() if callable(sources) else sources
    missing = sorted({n for ns in splits.values() for n in ns} - set(loaded))
    if missing:
        raise ValueError(f'splits name sources that were not given: {missing}')
    parent = osp.dirname(folder) or '.'
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{name}-partial-', dir=parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset is not
        for sub in ('JPEGImages', 'Annotations', osp.join('ImageSets', 'Main')):
            os.makedirs(osp.join(tmp, sub))
        tile_ids, counts, described, fixes = _write_tiles(tmp, args['splits'], loaded, classes, args)
        for fix in fixes:
            print_log(f'annotation fixed: {fix}', logger='current', level=logging.WARNING)
        extra = extra_files() if callable(extra_files) else extra_files or {}
        for file_name, data in extra.items():
            with open(osp.join(tmp, file_name), 'wb') as f:
                f.write(data)
        manifest = dict(wanted, sources=described, counts=counts, fixes=[str(f) for f in fixes], tiles=tile_ids)
        with open(osp.join(tmp, 'manifest.json'), 'w', encoding='utf-8') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write('\n')
        try:
            os.rename(tmp, folder)
        except OSError:
            if not osp.isdir(folder):  # a real failure, not a concurrent writer that finished first
                raise
            return _result(folder, _check_existing(folder, wanted), created=False)
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return _result(folder, manifest, created=True)
