"""Tiny datasets in the real on-disk formats, and the config overrides a user would give to point a config at them.

* COCO (mmdet's ``data/coco/`` layout): ``annotations/instances_{train,val}2017.json`` + ``{train,val}2017/*.jpg``
  with the 80 COCO category names;
* PASCAL VOC (``data/VOCdevkit/``): ``VOC2007`` and ``VOC2012`` with ``ImageSets/Main/{trainval,test}.txt``,
  ``Annotations/*.xml`` and ``JPEGImages/*.jpg``.

Images are 128x96 with two or three boxes of at least 40 pixels (mmdet's VOC filters ignore boxes under 32 pixels
and its SSD configs drop images under 32 pixels).
"""

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Tuple

import cv2
import numpy as np
from mmdet.datasets import CocoDataset, VOCDataset
from mmengine.config import Config
from mmengine.logging import MMLogger

CONFIG_ROOT = Path(__file__).resolve().parents[2] / 'configs'
#: every config of the repository (relative to configs/), ``_base_`` left out
CONFIGS = sorted(str(p.relative_to(CONFIG_ROOT)) for p in CONFIG_ROOT.rglob('*.py') if '_base_' not in p.parts)
WIDTH, HEIGHT = 128, 96
Box = Tuple[int, int, int, int]  # x1, y1, x2, y2
#: per image: (class index, box)
OBJECTS: List[List[Tuple[int, Box]]] = [
    [(0, (8, 6, 60, 70)), (2, (64, 20, 120, 90))],
    [(1, (20, 10, 100, 60)), (0, (4, 50, 50, 94)), (14, (70, 40, 126, 92))],
    [(2, (30, 30, 90, 92))],
]


def _image(index: int) -> np.ndarray:
    """A BGR image with one filled rectangle per object, on a noisy background."""
    rng = np.random.default_rng(index)
    img = rng.integers(60, 200, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    for label, (x1, y1, x2, y2) in OBJECTS[index % len(OBJECTS)]:
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
        img[y1 + 2 : y1 + 6, x1 + 2 : x1 + 2 + label % 20 + 4] = 255  # something class-specific
    return img


def write_coco(root: Path, num_train: int = 2, num_val: int = 2) -> Path:
    """``root/coco/`` in mmdet's COCO layout; returns the data root (with a trailing slash, as mmdet's)."""
    data_root = root / 'coco'
    classes = CocoDataset.METAINFO['classes']
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(classes)]
    (data_root / 'annotations').mkdir(parents=True)
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        (data_root / split).mkdir()
        images, annotations = [], []
        for i in range(count):
            name = f'{i:012d}.jpg'
            cv2.imwrite(str(data_root / split / name), _image(i))
            images.append(dict(id=i + 1, file_name=name, width=WIDTH, height=HEIGHT))
            for label, (x1, y1, x2, y2) in OBJECTS[i % len(OBJECTS)]:
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=i + 1,
                        category_id=label + 1,
                        bbox=[x1, y1, x2 - x1, y2 - y1],
                        area=(x2 - x1) * (y2 - y1),
                        iscrowd=0,
                    )
                )
        ann = dict(images=images, annotations=annotations, categories=categories)
        (data_root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(ann))
    return data_root


def _voc_xml(name: str, index: int) -> str:
    classes = VOCDataset.METAINFO['classes']
    objects = ''.join(
        f'<object><name>{classes[label]}</name><pose>Unspecified</pose><truncated>0</truncated>'
        f'<difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>'
        '</bndbox></object>'
        for label, (x1, y1, x2, y2) in OBJECTS[index % len(OBJECTS)]
    )
    return (
        f'<annotation><filename>{name}.jpg</filename><size><width>{WIDTH}</width><height>{HEIGHT}</height>'
        f'<depth>3</depth></size>{objects}</annotation>'
    )


def write_voc(root: Path, num_images: int = 2) -> Path:
    """``root/VOCdevkit/`` with VOC2007 (trainval + test) and VOC2012 (trainval); returns the data root."""
    data_root = root / 'VOCdevkit'
    for year, sets in (('VOC2007', ('trainval', 'test')), ('VOC2012', ('trainval',))):
        for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
            (data_root / year / sub).mkdir(parents=True)
        names = [f'{year[-4:]}_{i:06d}' for i in range(num_images)]
        for i, name in enumerate(names):
            cv2.imwrite(str(data_root / year / 'JPEGImages' / f'{name}.jpg'), _image(i))
            (data_root / year / 'Annotations' / f'{name}.xml').write_text(_voc_xml(name, i))
        for image_set in sets:
            (data_root / year / 'ImageSets' / 'Main' / f'{image_set}.txt').write_text('\n'.join(names) + '\n')
    return data_root


def dataset_cfgs(dataset: dict) -> Iterator[dict]:
    """Every leaf dataset config inside a (Repeat/Concat) dataset config."""
    if 'dataset' in dataset:
        yield from dataset_cfgs(dataset['dataset'])
    elif 'datasets' in dataset:
        for d in dataset['datasets']:
            yield from dataset_cfgs(d)
    else:
        yield dataset


def point_to(cfg: Config, coco: Path, voc: Path, shapes: Path) -> None:
    """Set ``data_root`` of every dataset (and the COCO evaluators' ``ann_file``), as ``--cfg-options`` would.

    The annotation files and image folders stay the config's (mmdet's defaults). Generated shapes datasets get a
    private root and 4 train / 2 val images.
    """
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for ds in dataset_cfgs(cfg[loader]['dataset']):
            if ds['type'] == 'SyntheticShapesDataset':
                ds['data_root'] = str(shapes) + '/'
                ds['num_images'] = 4 if loader == 'train_dataloader' else 2
            else:
                ds['data_root'] = str({'CocoDataset': coco, 'VOCDataset': voc}[ds['type']]) + '/'
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg[key]
        if evaluator['type'] == 'CocoMetric':
            val = next(dataset_cfgs(cfg[key.replace('evaluator', 'dataloader')]['dataset']))
            evaluator['ann_file'] = val['data_root'] + val.get('ann_file', f'{val.get("split")}/annotation.json')


#: smaller Resize scales for the Faster R-CNN configs in tests
SMALL_SCALE = {(1333, 800): (320, 192), (1000, 600): (320, 192)}


def train_batch_size(cfg: Config) -> int:
    """One image per training batch, two where a neck or head normalises its 1x1 last level in training mode
    (SSDLite: BatchNorm needs more than one value per channel)."""
    return 2 if any(cfg.model.get(part, {}).get('norm_cfg') for part in ('neck', 'bbox_head')) else 1


def shrink(cfg: Config) -> None:
    """Smaller Resize scales for the Faster R-CNN configs (see SMALL_SCALE); small batches, no worker processes."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        batch = train_batch_size(cfg) if loader == 'train_dataloader' else 1
        cfg[loader].update(batch_size=batch, num_workers=0, persistent_workers=False)
        for ds in dataset_cfgs(cfg[loader]['dataset']):
            for t in ds['pipeline']:
                if t['type'] == 'Resize' and tuple(t.get('scale') or ()) in SMALL_SCALE:
                    t['scale'] = SMALL_SCALE[tuple(t['scale'])]


@contextmanager
def quiet_logger():
    """mmengine's current logger at WARNING (init_weights logs every parameter at INFO), restored afterwards."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        yield
    finally:
        logger.setLevel(level)
