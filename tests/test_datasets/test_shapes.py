import json
import os
import os.path as osp

import pytest
from mmengine.registry import init_default_scope

from mmbasis.datasets import SyntheticShapesDataset, generate_shapes_split
from mmdet.registry import DATASETS


def test_generation_is_deterministic_and_valid_coco(tmp_path):
    a = generate_shapes_split(str(tmp_path / 'a'), 'train', 6, img_size=64, seed=3)
    b = generate_shapes_split(str(tmp_path / 'b'), 'train', 6, img_size=64, seed=3)
    ja = json.load(open(osp.join(a, 'annotation.json')))
    jb = json.load(open(osp.join(b, 'annotation.json')))
    assert ja == jb
    assert len(ja['images']) == 6 and [c['name'] for c in ja['categories']] == ['rectangle', 'ellipse', 'triangle']
    assert ja['annotations'] and all(1 <= len([x for x in ja['annotations'] if x['image_id'] == im['id']]) <= 4
                                     for im in ja['images'])
    for ann in ja['annotations']:
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and w > 0 and h > 0
    with open(osp.join(a, 'images', '000000.png'), 'rb') as f1, open(osp.join(b, 'images', '000000.png'), 'rb') as f2:
        assert f1.read() == f2.read()
    c = generate_shapes_split(str(tmp_path / 'c'), 'train', 6, img_size=64, seed=4)
    assert json.load(open(osp.join(c, 'annotation.json'))) != ja


def test_existing_split_is_reused_or_refused(tmp_path):
    root = str(tmp_path)
    path = generate_shapes_split(root, 'val', 3, img_size=48)
    mtime = os.path.getmtime(osp.join(path, 'annotation.json'))
    assert generate_shapes_split(root, 'val', 3, img_size=48) == path
    assert os.path.getmtime(osp.join(path, 'annotation.json')) == mtime  # not regenerated
    with pytest.raises(FileExistsError, match='num_images'):
        generate_shapes_split(root, 'val', 4, img_size=48)
    assert len(os.listdir(osp.join(path, 'images'))) == 3  # untouched
    os.makedirs(osp.join(root, 'foreign'))
    with pytest.raises(FileExistsError, match='not a generated shapes split'):
        generate_shapes_split(root, 'foreign', 3)
    assert not [n for n in os.listdir(root) if n.startswith('.')]  # no partial folders left behind


@pytest.mark.parametrize('kwargs, match', [
    (dict(split='../x', num_images=2), 'split'), (dict(split='t', num_images=0), 'num_images=0'),
    (dict(split='t', num_images=2, img_size=8), 'img_size=8'), (dict(split='t', num_images=2, seed=-1), 'seed'),
    (dict(split='t', num_images=2, max_objects=0), 'max_objects=0')])
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_shapes_split(str(tmp_path), **kwargs)


def test_registered_dataset_loads(tmp_path):
    init_default_scope('mmdet')
    ds = DATASETS.build(dict(type='SyntheticShapesDataset', data_root=str(tmp_path), split='train', num_images=4,
                             img_size=64, pipeline=[dict(type='LoadImageFromFile'),
                                                    dict(type='LoadAnnotations', with_bbox=True),
                                                    dict(type='PackDetInputs')]))
    assert isinstance(ds, SyntheticShapesDataset) and len(ds) == 4
    sample = ds[0]
    assert sample['inputs'].shape == (3, 64, 64)
    assert len(sample['data_samples'].gt_instances) >= 1
