import json
import multiprocessing
import os
import os.path as osp
import signal

import pytest
from mmdet.registry import DATASETS
from mmengine.registry import init_default_scope

from mmbasis.datasets import SyntheticShapesDataset, generate_shapes_for_config, generate_shapes_split


def test_generation_is_deterministic_and_valid_coco(tmp_path):
    a = generate_shapes_split(str(tmp_path / 'a'), 'train', 6, img_size=64, seed=3)
    b = generate_shapes_split(str(tmp_path / 'b'), 'train', 6, img_size=64, seed=3)
    ja = json.load(open(osp.join(a, 'annotation.json')))
    jb = json.load(open(osp.join(b, 'annotation.json')))
    assert ja == jb
    assert len(ja['images']) == 6 and [c['name'] for c in ja['categories']] == ['rectangle', 'ellipse', 'triangle']
    assert ja['annotations'] and all(
        1 <= len([x for x in ja['annotations'] if x['image_id'] == im['id']]) <= 4 for im in ja['images']
    )
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


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(split='../x', num_images=2), 'split'),
        (dict(split='t', num_images=0), 'num_images=0'),
        (dict(split='t', num_images=2, img_size=8), 'img_size=8'),
        (dict(split='t', num_images=2, seed=-1), 'seed'),
        (dict(split='t', num_images=2, max_objects=0), 'max_objects=0'),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_shapes_split(str(tmp_path), **kwargs)


def test_registered_dataset_loads(tmp_path):
    init_default_scope('mmdet')
    ds = DATASETS.build(
        dict(
            type='SyntheticShapesDataset',
            data_root=str(tmp_path),
            split='train',
            num_images=4,
            img_size=64,
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs'),
            ],
        )
    )
    assert isinstance(ds, SyntheticShapesDataset) and len(ds) == 4
    sample = ds[0]
    assert sample['inputs'].shape == (3, 64, 64)
    assert len(sample['data_samples'].gt_instances) >= 1


def _generate(root: str, num_images: int, barrier=None) -> None:
    """Child process body: (wait for the other children, then) generate a split."""
    if barrier is not None:
        barrier.wait(timeout=60)
    generate_shapes_split(root, 'train', num_images, img_size=48, seed=5)


def _annotation(folder: str) -> dict:
    with open(osp.join(folder, 'annotation.json'), encoding='utf-8') as f:
        return json.load(f)


# fork: the children start at once, without re-importing mmdet (like DDP ranks that build their datasets)
_FORK = multiprocessing.get_context('fork')


def test_concurrent_generation_gives_one_complete_dataset(tmp_path):
    """Two processes (like two DDP ranks) generating the same split at the same moment both succeed."""
    root = str(tmp_path / 'shared')
    barrier = _FORK.Barrier(2)
    procs = [_FORK.Process(target=_generate, args=(root, 300, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    assert os.listdir(root) == ['train']  # the loser discarded its copy: no partial folder left behind
    reference = generate_shapes_split(str(tmp_path / 'serial'), 'train', 300, img_size=48, seed=5)
    assert _annotation(osp.join(root, 'train')) == _annotation(reference)
    assert len(os.listdir(osp.join(root, 'train', 'images'))) == 300


def _generate_and_die(root: str, kill_after: int) -> None:
    """Generate a split and SIGKILL this process right after image ``kill_after`` was written (deterministic)."""
    import mmbasis.datasets.shapes as shapes

    real_imwrite, written = shapes.cv2.imwrite, []

    def imwrite(path, img):
        ok = real_imwrite(path, img)
        written.append(path)
        if len(written) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup code runs, as with `kill -9`
        return ok

    shapes.cv2.imwrite = imwrite
    _generate(root, 3 * kill_after)


def test_killed_generation_leaves_no_partial_split(tmp_path):
    root = str(tmp_path / 'killed')
    proc = _FORK.Process(target=_generate_and_die, args=(root, 10))
    proc.start()
    proc.join(timeout=120)
    target = osp.join(root, 'train')
    assert proc.exitcode == -signal.SIGKILL and not osp.exists(target), 'the kill must come mid-generation'
    assert [n for n in os.listdir(root) if n.startswith('.train-partial-')]  # the dead run's hidden temp folder
    # the next run generates the split normally and ignores the dead run's temporary folder
    folder = generate_shapes_split(root, 'train', 20, img_size=48, seed=5)
    assert len(_annotation(folder)['images']) == 20


def test_generate_for_config_follows_wrappers(tmp_path):
    root = str(tmp_path)
    shapes = dict(type='SyntheticShapesDataset', data_root=root, num_images=2, img_size=32)
    cfg = dict(
        train_dataloader=dict(dataset=dict(type='RepeatDataset', times=2, dataset=dict(shapes, split='train'))),
        val_dataloader=dict(
            dataset=dict(
                type='ConcatDataset',
                datasets=[dict(shapes, split='val', seed=1), dict(type='CocoDataset', ann_file='x')],
            )
        ),
        test_dataloader=dict(dataset=dict(shapes, split='val', seed=1)),
    )
    assert generate_shapes_for_config(cfg) == [osp.join(root, 'train'), osp.join(root, 'val')]
    assert sorted(os.listdir(root)) == ['train', 'val']
    cfg['test_dataloader']['dataset']['seed'] = 2  # the same folder with other arguments: refused
    with pytest.raises(FileExistsError, match='seed'):
        generate_shapes_for_config(cfg)


def test_dataset_rejects_bad_arguments(tmp_path):
    init_default_scope('mmdet')
    with pytest.raises(ValueError, match='img_size=5000'):
        DATASETS.build(dict(type='SyntheticShapesDataset', data_root=str(tmp_path), img_size=5000))
    with pytest.raises(ValueError, match="root=''"):
        generate_shapes_split('', 'train', 2)


def test_hard_variant_is_a_new_option(tmp_path):
    """variant='hard': six classes, more, smaller and overlapping objects; deterministic; the default is unchanged."""
    a = generate_shapes_split(str(tmp_path / 'a'), 'train', 30, seed=3, max_objects=10, variant='hard')
    b = generate_shapes_split(str(tmp_path / 'b'), 'train', 30, seed=3, max_objects=10, variant='hard')
    ja, jb = (json.load(open(osp.join(p, 'annotation.json'))) for p in (a, b))
    assert ja == jb
    assert [c['name'] for c in ja['categories']] == ['rectangle', 'ellipse', 'triangle', 'diamond', 'cross', 'ring']
    assert {x['category_id'] for x in ja['annotations']} == set(range(1, 7))
    assert len(ja['annotations']) > 3 * 30  # more objects per image than the default's 1..4 (2..10)
    assert min(x['area'] for x in ja['annotations']) < 20 * 20  # small objects
    default = generate_shapes_split(str(tmp_path / 'd'), 'train', 30, seed=3)
    assert 'variant' not in json.load(open(osp.join(default, 'meta.json')))  # existing default data still matches
    with pytest.raises(FileExistsError, match='variant'):  # the same folder with another variant is refused
        generate_shapes_split(str(tmp_path / 'd'), 'train', 30, seed=3, variant='hard')
    with pytest.raises(ValueError, match="variant='medium'"):
        generate_shapes_split(str(tmp_path / 'e'), 'train', 3, variant='medium')
    init_default_scope('mmdet')
    ds = DATASETS.build(
        dict(
            type='SyntheticShapesDataset',
            data_root=str(tmp_path / 'a'),
            split='train',
            num_images=30,
            seed=3,
            max_objects=10,
            variant='hard',
            pipeline=[],
        )
    )
    assert ds.metainfo['classes'][-1] == 'ring' and len(ds) == 30
