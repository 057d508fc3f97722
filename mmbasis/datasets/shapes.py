"""A generated detection dataset ("shapes") in COCO format: the embedded default of the demo and tests.

Images show 1..``max_objects`` filled rectangles, ellipses and triangles of random size and colour on a
smooth random background with noise. Everything is deterministic given ``seed``.

On disk (``root/<split>/``): ``images/000000.png ...``, ``annotation.json`` (COCO) and ``meta.json`` (the
generation arguments). A split is generated in a temporary folder and moved into place with one
``os.rename``, so a killed run or two processes (DDP ranks) generating at once never leave a partial
dataset; an existing split generated with other arguments is never overwritten (clear error instead).
"""

import inspect
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import cv2
import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from ..utils.checkpoint_io import current_umask
from ..utils.misc import check_choice, check_int

SHAPES_CLASSES = ('rectangle', 'ellipse', 'triangle')
SHAPES_PALETTE = [(220, 20, 60), (0, 128, 255), (60, 180, 75)]
#: ``variant='hard'``: six classes (two pairs that differ in detail: ellipse/ring, rectangle/diamond ...), small and
#: overlapping (occluded) objects, low contrast, unannotated clutter and stronger noise.
HARD_CLASSES = ('rectangle', 'ellipse', 'triangle', 'diamond', 'cross', 'ring')
HARD_PALETTE = SHAPES_PALETTE + [(255, 128, 0), (145, 30, 180), (70, 240, 240)]
VARIANTS = ('default', 'hard')
_FORMAT_VERSION = 1


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour gradient plus Gaussian noise, ``(size, size, 3)`` uint8."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 12, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _iou(a: List[float], b: List[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _place(
    rng: np.random.Generator, size: int, sides: Tuple[int, int], boxes: List[List[float]], max_iou: float
) -> Optional[List[float]]:
    """A box ``[x, y, w, h]`` with sides in ``sides`` (inclusive) overlapping every box of ``boxes`` by less than
    ``max_iou``, in at most 20 draws from ``rng``; None when none fits."""
    for _attempt in range(20):
        w, h = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        box = [float(x), float(y), float(w), float(h)]
        if all(_iou(box, b) < max_iou for b in boxes):
            return box
    return None


def _draw_image(rng: np.random.Generator, size: int, max_objects: int):
    img = _background(rng, size)
    boxes: List[List[float]] = []
    labels: List[int] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        box = _place(rng, size, (int(size * 0.15), int(size * 0.45)), boxes, max_iou=0.2)
        if box is None:
            continue
        x, y, w, h = (int(v) for v in box)
        label = int(rng.integers(0, len(SHAPES_CLASSES)))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if label == 0:
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, thickness=-1)
        elif label == 1:
            cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, color, thickness=-1)
        else:
            pts = np.array([[x + w // 2, y], [x, y + h - 1], [x + w - 1, y + h - 1]], dtype=np.int32)
            cv2.fillPoly(img, [pts], color)
        boxes.append(box)
        labels.append(label)
    return img, boxes, labels


def draw_shapes_image(seed: int = 0, size: int = 160, max_objects: int = 4) -> np.ndarray:
    """One image of the shapes dataset, ``(size, size, 3)`` uint8 in the channel order it is stored in (BGR), e.g.
    to check a deployed model on an image of the kind it was trained on."""
    check_int('seed', seed, 0)
    check_int('size', size, 32, 4096)
    return _draw_image(np.random.default_rng(seed), size, max_objects)[0]


def _background_hard(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth background, stronger noise and 3..12 unannotated distractors (lines, dots, arcs)."""
    img = _background(rng, size).astype(np.float32)
    img += rng.normal(0, 12, size=img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 13))):
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x1, y1, x2, y2 = (int(v) for v in rng.integers(0, size, size=4))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            cv2.line(img, (x1, y1), (x2, y2), color, thickness=int(rng.integers(1, 3)))
        elif kind == 1:
            cv2.circle(img, (x1, y1), int(rng.integers(1, 4)), color, thickness=-1)
        else:
            axes = (int(rng.integers(4, size // 4)), int(rng.integers(4, size // 4)))
            start = int(rng.integers(0, 360))
            cv2.ellipse(img, (x1, y1), axes, 0, start, start + int(rng.integers(40, 160)), color, thickness=2)
    return img


def _draw_shape(img: np.ndarray, label: int, x: int, y: int, w: int, h: int, color, background) -> None:
    """Draw class ``label`` (index into HARD_CLASSES; the first three are the default classes) in the box."""
    cx, cy = x + w // 2, y + h // 2
    if label == 0:
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, thickness=-1)
    elif label == 1:
        cv2.ellipse(img, (cx, cy), (w // 2, h // 2), 0, 0, 360, color, thickness=-1)
    elif label == 2:
        cv2.fillPoly(img, [np.array([[cx, y], [x, y + h - 1], [x + w - 1, y + h - 1]], dtype=np.int32)], color)
    elif label == 3:
        cv2.fillPoly(img, [np.array([[cx, y], [x + w - 1, cy], [cx, y + h - 1], [x, cy]], dtype=np.int32)], color)
    elif label == 4:
        tw, th = max(1, w // 3), max(1, h // 3)
        cv2.rectangle(img, (x, cy - th // 2), (x + w - 1, cy + th // 2), color, thickness=-1)
        cv2.rectangle(img, (cx - tw // 2, y), (cx + tw // 2, y + h - 1), color, thickness=-1)
    else:
        cv2.ellipse(img, (cx, cy), (w // 2, h // 2), 0, 0, 360, color, thickness=-1)
        cv2.ellipse(img, (cx, cy), (max(1, w // 4), max(1, h // 4)), 0, 0, 360, background, thickness=-1)


def _draw_image_hard(rng: np.random.Generator, size: int, max_objects: int):
    """The ``hard`` variant: 2..max_objects objects of 6..40 % of the side, overlapping up to IoU 0.6 (later ones
    occlude earlier ones; boxes are the full extent), in colours close to the local background."""
    img = _background_hard(rng, size)
    boxes: List[List[float]] = []
    labels: List[int] = []
    for _ in range(int(rng.integers(2, max(2, max_objects) + 1))):
        box = _place(rng, size, (max(4, int(size * 0.06)), int(size * 0.4)), boxes, max_iou=0.6)
        if box is None:
            continue
        x, y, w, h = (int(v) for v in box)
        label = int(rng.integers(0, len(HARD_CLASSES)))
        local = img[y : y + h, x : x + w].reshape(-1, 3).mean(0)
        offset = rng.normal(0, 1, size=3)
        offset = offset / (np.linalg.norm(offset) + 1e-6) * rng.uniform(35, 110)  # low contrast, never invisible
        color = tuple(int(c) for c in np.clip(local + offset, 0, 255))
        _draw_shape(img, label, x, y, w, h, color, tuple(int(c) for c in local))
        boxes.append(box)
        labels.append(label)
    return img, boxes, labels


def generate_shapes_split(
    root: str,
    split: str,
    num_images: int,
    img_size: int = 160,
    seed: int = 0,
    max_objects: int = 4,
    variant: str = 'default',
) -> str:
    """Generate ``root/<split>`` unless it exists with the same arguments; return its path.

    Raises ``FileExistsError`` if ``root/<split>`` exists but was generated with other arguments, and
    ``ValueError`` for invalid arguments.
    """
    if not isinstance(root, str) or not root:
        raise ValueError(f'root={root!r} is not allowed: it must be a non-empty folder path')
    if not isinstance(split, str) or not split or os.sep in split or '/' in split or split.startswith('.'):
        raise ValueError(f'split={split!r} is not allowed: use a plain folder name such as "train" or "val"')
    check_int('num_images', num_images, 1)
    check_int('img_size', img_size, 32, 4096)
    check_int('seed', seed, 0)
    check_int('max_objects', max_objects, 1, 20)
    check_choice('variant', variant, VARIANTS)
    # what the split is made from (compared with an existing split's), in the order meta.json has always had
    meta = dict(format_version=_FORMAT_VERSION, split=split, num_images=num_images, img_size=img_size, seed=seed)
    meta.update(max_objects=max_objects, classes=list(SHAPES_CLASSES if variant == 'default' else HARD_CLASSES))
    if variant != 'default':  # the default's meta (and so its existing data on disk) stays as it was
        meta['variant'] = variant
    target = osp.join(root, split)
    if osp.isdir(target):
        _check_existing(target, meta)
        return target
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{split}-partial-', dir=root)
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # a plain mkdir's permissions, not mkdtemp's 0700
        _write_split(tmp, meta)
        try:
            os.rename(tmp, target)
        except OSError:
            if not osp.isdir(target):  # a real failure, not a concurrent writer that finished first
                raise
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    _check_existing(target, meta)
    return target


def _shapes_dataset_cfgs(dataset: Mapping) -> Iterator[Mapping]:
    """Yield every ``SyntheticShapesDataset`` config inside ``dataset`` (through wrappers)."""
    if dataset.get('type') in ('SyntheticShapesDataset', SyntheticShapesDataset):
        yield dataset
    if isinstance(dataset.get('dataset'), Mapping):  # RepeatDataset, ClassBalancedDataset, MultiImageMix...
        yield from _shapes_dataset_cfgs(dataset['dataset'])
    for sub in dataset.get('datasets', None) or ():  # ConcatDataset
        if isinstance(sub, Mapping):
            yield from _shapes_dataset_cfgs(sub)


def generate_shapes_for_config(cfg: Mapping) -> List[str]:
    """Generate (or check) every shapes split used by the train/val/test dataloaders of a config.

    Args:
        cfg: a loaded mmengine ``Config`` (or dict) with ``*_dataloader.dataset`` entries.

    Returns:
        The split folders, without duplicates, in dataloader order. Same errors as
        :func:`generate_shapes_split`; datasets of other types are ignored.
    """
    defaults = {k: p.default for k, p in inspect.signature(SyntheticShapesDataset.__init__).parameters.items()}
    folders: List[str] = []
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if not isinstance(loader, Mapping) or not isinstance(loader.get('dataset'), Mapping):
            continue
        for ds in _shapes_dataset_cfgs(loader['dataset']):
            args = {
                k: ds.get(k, defaults[k])
                for k in ('data_root', 'split', 'num_images', 'img_size', 'seed', 'max_objects', 'variant')
            }
            root = args.pop('data_root')
            folder = generate_shapes_split(root, **args)
            if folder not in folders:
                folders.append(folder)
    return folders


def _check_existing(target: str, meta: Dict) -> None:
    meta_file = osp.join(target, 'meta.json')
    try:
        with open(meta_file, encoding='utf-8') as f:
            existing = json.load(f)
    except (OSError, ValueError) as e:
        raise FileExistsError(
            f'{target} exists but is not a generated shapes split ({meta_file}: {e}); '
            'move it away or choose another data_root'
        ) from e
    if existing != meta:
        diff = {k: (existing.get(k), v) for k, v in meta.items() if existing.get(k) != v}
        raise FileExistsError(
            f'{target} was generated with other arguments (existing, requested): {diff}; '
            'delete it to regenerate or choose another data_root'
        )


def _write_split(folder: str, meta: Dict) -> None:
    rng = np.random.default_rng([meta['seed'], sum(map(ord, meta['split']))])
    os.makedirs(osp.join(folder, 'images'))
    images, annotations = [], []
    for i in range(meta['num_images']):
        draw = _draw_image_hard if meta.get('variant') == 'hard' else _draw_image
        img, boxes, labels = draw(rng, meta['img_size'], meta['max_objects'])
        name = f'{i:06d}.png'
        if not cv2.imwrite(osp.join(folder, 'images', name), img):
            raise OSError(f'could not write {osp.join(folder, "images", name)}')
        images.append(dict(id=i + 1, file_name=name, width=meta['img_size'], height=meta['img_size']))
        for box, label in zip(boxes, labels):
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=label + 1,
                    bbox=box,
                    area=box[2] * box[3],
                    iscrowd=0,
                )
            )
    coco = dict(
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=n) for i, n in enumerate(meta['classes'])],
    )
    with open(osp.join(folder, 'annotation.json'), 'w', encoding='utf-8') as f:
        json.dump(coco, f)
    with open(osp.join(folder, 'meta.json'), 'w', encoding='utf-8') as f:
        json.dump(meta, f)


@DATASETS.register_module()
class SyntheticShapesDataset(CocoDataset):
    """COCO-format dataset of generated shapes; generates its split on first use.

    Args:
        split (str): folder under ``data_root`` (``'train'``, ``'val'``, ...).
        num_images (int): images in the split.
        img_size (int): square image side in pixels.
        seed (int): generation seed (use different seeds or splits for train and val).
        max_objects (int): at most this many objects per image.
        variant (str): ``'default'`` (three classes, separated objects) or ``'hard'`` (six classes, small and
            occluded objects, low contrast, clutter; see :data:`HARD_CLASSES`). The class names follow.
        **kwargs: :class:`mmdet.datasets.CocoDataset` arguments; ``ann_file`` and ``data_prefix`` default to
            ``<split>/annotation.json`` and ``<split>/images/``.
    """

    METAINFO = dict(classes=SHAPES_CLASSES, palette=SHAPES_PALETTE)

    def __init__(
        self,
        split: str = 'train',
        num_images: int = 200,
        img_size: int = 160,
        seed: int = 0,
        max_objects: int = 4,
        variant: str = 'default',
        data_root: str = 'data/shapes',
        **kwargs,
    ) -> None:
        generate_shapes_split(data_root, split, num_images, img_size, seed, max_objects, variant)
        if variant == 'hard':
            kwargs.setdefault('metainfo', dict(classes=HARD_CLASSES, palette=HARD_PALETTE))
        kwargs.setdefault('ann_file', f'{split}/annotation.json')
        kwargs.setdefault('data_prefix', dict(img=f'{split}/images/'))
        super().__init__(data_root=data_root, **kwargs)
