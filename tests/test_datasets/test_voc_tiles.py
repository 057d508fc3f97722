"""The Pascal VOC tiler (mmbasis/datasets/voc_tiles.py, voc_xml.py) on small generated scenes: geometry, the
border rule, the annotation checks and fixes, what mmdet's VOCDataset reads, determinism, reuse and refusal."""

import json
import multiprocessing
import os
import os.path as osp
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmdet.datasets import VOCDataset
from mmengine.registry import init_default_scope

from mmbasis.datasets import VOCAnnotationError, VOCSource, make_tiled_voc
from mmbasis.datasets.voc_tiles import cut, tile_origins
from mmbasis.datasets.voc_xml import VOCObject, read_objects
from tests.helpers.voc import BOXES, HEIGHT, WIDTH, scene, voc_xml


def source(name='scene', boxes=BOXES, seed=0, **kw) -> VOCSource:
    return VOCSource(scene(seed, kw.get('width', WIDTH), kw.get('height', HEIGHT)), voc_xml(boxes, **kw),
                     f'{name}.png', f'{name}.xml')  # fmt: skip


def make(folder, sources=None, splits=None, **kw):
    sources = sources or dict(a=source('a'), b=source('b', seed=1))
    splits = splits or dict(train=['a'], val=['b'], test=['b'])
    kw.setdefault('tile_size', 128)
    return make_tiled_voc(str(folder), splits, sources, ('car', 'tree'), dict(test='origin'), **kw)


def test_tile_origins():
    assert tile_origins(1249, 400, 400, shift_last=False) == [0, 400, 800, 1200]  # last padded: 1200..1600
    assert tile_origins(1200, 400, 400, shift_last=False) == [0, 400, 800]  # exact fit: nothing padded
    assert tile_origins(2299, 400, 200, shift_last=True) == [*range(0, 1801, 200), 1899]  # last shifted inward
    assert tile_origins(300, 400, 200, shift_last=True) == [0] == tile_origins(300, 400, 400, shift_last=False)
    for length in range(129, 700, 37):  # non-overlapping tiles cover every pixel exactly once
        starts = tile_origins(length, 128, 128, shift_last=False)
        covered = np.zeros(starts[-1] + 128, int)
        for s in starts:
            covered[s : s + 128] += 1
        assert (covered == 1).all() and starts[-1] < length <= starts[-1] + 128
        shifted = tile_origins(length, 128, 64, shift_last=True)  # training tiles: inside the image, covering it
        assert shifted[-1] + 128 == length and all(b - a <= 64 for a, b in zip(shifted, shifted[1:]))


def test_border_rule():
    obj = VOCObject('car', (120, 100, 139, 140))  # 20 x 41 pixels
    assert cut(obj, 0, 0, 256, 0.5, 'difficult') == obj  # whole: unchanged, not truncated
    right = cut(obj, 128, 64, 128, 0.5, 'difficult')  # tile x 129..256, y 65..192: columns 129..139 = 11/20
    assert right == VOCObject('car', (1, 36, 11, 76), difficult=False, truncated=True)
    left = cut(obj, 0, 64, 128, 0.5, 'difficult')  # columns 120..128: 9/20 visible
    assert left == VOCObject('car', (120, 36, 128, 76), difficult=True, truncated=True)
    assert cut(obj, 0, 64, 128, 0.5, 'drop') is None
    assert cut(obj, 0, 64, 128, 0.45, 'drop') == VOCObject('car', (120, 36, 128, 76), truncated=True)  # 9/20 = 0.45
    assert cut(obj, 0, 0, 128, 0.1, 'difficult') == VOCObject('car', (120, 100, 128, 128), truncated=True)  # 9x29
    assert cut(VOCObject('car', (120, 100, 129, 140)), 128, 64, 128, 0.01, 'difficult') is None  # 1 column left
    assert cut(obj, 200, 0, 128, 0.5, 'difficult') is None  # elsewhere
    kept = VOCObject('car', (120, 100, 139, 140), difficult=True)
    assert cut(kept, 0, 0, 256, 0.5, 'drop').difficult  # a source's difficult flag stays


def test_bad_boxes_are_fixed_by_the_rules_and_reported():
    boxes = [
        ('car', 10, 10, 40, 40),  # fine
        ('car', -5, 20, 30, 60),  # outside on the left: clipped to xmin=1
        ('tree', 290, 240, 320, 260),  # outside on the right and bottom: clipped
        ('car', 400, 10, 420, 30),  # entirely outside: dropped
        ('tree', 50, 50, 50, 80),  # zero width: dropped
        ('car', 10.4, 20.6, 30.5, 40),  # not integers: rounded
        ('car', -9, 5, 1, 9),  # clipped to zero width: dropped
    ]
    objects, fixes = read_objects(voc_xml(boxes), 'x.xml', ('car', 'tree'), WIDTH, HEIGHT)
    assert [o.box for o in objects] == [(10, 10, 40, 40), (1, 20, 30, 60), (290, 240, 300, 250), (10, 21, 31, 40)]
    text = [str(f) for f in fixes]
    assert text == [
        'x.xml: object 1 (car) box (-5, 20, 30, 60): reaches outside the 300x250 image -> clipped to (1, 20, 30, 60)',
        'x.xml: object 2 (tree) box (290, 240, 320, 260): reaches outside the 300x250 image -> clipped to '
        '(290, 240, 300, 250)',
        'x.xml: object 3 (car) box (400, 10, 420, 30): entirely outside the 300x250 image -> dropped',
        'x.xml: object 4 (tree) box (50, 50, 50, 80): zero width or height (xmin == xmax or ymin == ymax) -> dropped',
        'x.xml: object 5 (car) box (10.4, 20.6, 30.5, 40): coordinates are not integers -> rounded to (10, 21, 31, 40)',
        'x.xml: object 6 (car) box (-9, 5, 1, 9): reaches outside the 300x250 image -> clipped to (1, 5, 1, 9)',
        'x.xml: object 6 (car) box (-9, 5, 1, 9): zero width or height (xmin == xmax or ymin == ymax) -> dropped',
    ]


@pytest.mark.parametrize(
    'xml, match',
    [
        (voc_xml([('car', 30, 10, 20, 40)]), r'object 0 \(car\): box \(30, 10, 20, 40\) is inverted'),
        (voc_xml([('car', 10, 10, 20, 40), ('bus', 1, 1, 5, 5)]), r"object 1 \(bus\): class 'bus' is not one of"),
        (voc_xml([('car', 10, 'a', 20, 40)]), r"<ymin> is 'a', not a number"),
        (voc_xml([('car', 10, 10, 20, 40)], width=301), 'says 301x250 but the image is 300x250'),
        (voc_xml([]).replace(b'<annotation>', b'<annotation'), 'not valid XML'),
        (voc_xml([('car', 1, 1, 5, 5)]).replace(b'<difficult>0', b'<difficult>2'), "<difficult> is '2'"),
    ],
)
def test_bad_annotations_are_refused(xml, match):
    with pytest.raises(VOCAnnotationError, match=match):
        read_objects(xml, 'x.xml', ('car', 'tree'), WIDTH, HEIGHT)


def test_written_folder_is_what_mmdets_voc_dataset_reads(tmp_path):
    result = make(tmp_path / 'tiles')
    folder = Path(result.folder)
    assert result.created and folder == tmp_path / 'tiles'
    # 300x250 at 128: training tiles every 64 px, the last shifted to the border; val tiles padded
    assert tile_origins(300, 128, 64, True) == [0, 64, 128, 172] and tile_origins(250, 128, 64, True) == [0, 64, 122]
    assert result.counts['train']['tiles'] == 4 * 3
    val_tiles = [f'b_x{x:05d}_y{y:05d}' for y in (0, 128) for x in (0, 128, 256)]
    assert result.splits['val'] == result.splits['test'] == val_tiles
    assert sorted(os.listdir(folder)) == ['Annotations', 'ImageSets', 'JPEGImages', 'manifest.json']
    init_default_scope('mmdet')
    ds = VOCDataset(
        data_root=str(tmp_path),
        ann_file='tiles/ImageSets/Main/val.txt',
        data_prefix=dict(sub_data_root='tiles/'),
        metainfo=dict(classes=('car', 'tree')),
        test_mode=True,
        pipeline=[],
    )
    assert ds.metainfo['dataset_type'] is None  # a folder name without VOC2007/VOC2012: VOCMetric names the classes
    infos = {Path(d['img_path']).stem: d for d in (ds.get_data_info(i) for i in range(len(ds)))}
    assert list(infos) == result.splits['val']
    # what mmdet reads (0-based: VOC minus one) for the top-left and top-middle tiles
    read = lambda tile: [(i['bbox'], i['bbox_label'], i['ignore_flag']) for i in infos[tile]['instances']]  # noqa: E731
    assert read('b_x00000_y00000') == [
        ([9, 9, 59, 49], 0, 0),
        ([99, 19, 127, 59], 1, 1),  # 29 of 60 columns visible: difficult, ignored by the VOC metric
        ([119, 59, 127, 99], 0, 1),  # 9 of 20: difficult
        ([29, 126, 69, 127], 1, 0),  # 2 of 3 rows visible
    ]
    assert read('b_x00128_y00000') == [([0, 19, 30, 59], 1, 0), ([0, 59, 10, 99], 0, 0)]
    assert read('b_x00256_y00128') == [([0, 71, 43, 121], 1, 0)]  # 44 of 61 columns: kept, truncated
    # the image: the source pixels in the tile, black beyond the source's right border
    src = cv2.imdecode(np.frombuffer(source('b', seed=1).image, np.uint8), cv2.IMREAD_COLOR)
    tile = cv2.imread(str(folder / 'JPEGImages' / 'b_x00256_y00128.jpg'))
    assert tile.shape == (128, 128, 3)
    assert np.abs(tile[: 250 - 128, : 300 - 256].astype(int) - src[128:, 256:]).mean() < 2.5  # JPEG 4:4:4 at quality 95
    assert tile[:, 300 - 256 + 8 :].max() < 12  # beyond the JPEG blocks that hold the border
    manifest = json.loads((folder / 'manifest.json').read_text())
    assert manifest['arguments']['tile_size'] == 128 and manifest['origin'] == dict(test='origin')
    assert manifest['sources']['b']['objects'] == len(BOXES) and manifest['fixes'] == []


def test_val_tiles_keep_every_box_once(tmp_path):
    """Non-overlapping tiles with below_min_visible='difficult': the visible parts of each box add up to the box."""
    rng = np.random.default_rng(3)
    boxes = []
    for _ in range(60):
        x, y = int(rng.integers(1, WIDTH - 30)), int(rng.integers(1, HEIGHT - 30))
        boxes.append(('tree', x, y, x + int(rng.integers(5, 30)), y + int(rng.integers(5, 30))))
    boxes = [b for b in boxes if all(b[i] % 128 and b[i + 2] % 128 != 1 for i in (1, 2))]  # no 1-px slivers
    result = make(tmp_path / 't', dict(b=source('b', boxes)), dict(val=['b']))
    area = 0
    for tile in result.splits['val']:
        xml = (tmp_path / 't' / 'Annotations' / f'{tile}.xml').read_bytes()
        objects, fixes = read_objects(xml, tile, ('tree',), 128, 128)
        area += sum((o.box[2] - o.box[0] + 1) * (o.box[3] - o.box[1] + 1) for o in objects)
        assert not fixes  # tile annotations are valid VOC
    assert area == sum((b[3] - b[1] + 1) * (b[4] - b[2] + 1) for b in boxes)
    assert result.counts['val']['boxes'] >= len(boxes)


def test_same_arguments_same_bytes_other_arguments_refused(tmp_path):
    a, b = make(tmp_path / 'a' / 'tiles'), make(tmp_path / 'b' / 'tiles')
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in sorted(Path(root).rglob('*')) if p.is_file()}
    assert files(a.folder) == files(b.folder) and len(files(a.folder)) > 20
    before = {p: os.stat(Path(a.folder) / p).st_mtime_ns for p in files(a.folder)}
    again = make(tmp_path / 'a' / 'tiles')
    assert not again.created and again.counts == a.counts
    with pytest.raises(FileExistsError, match=r'arguments.tile_size.*\(128, 96\)'):
        make(tmp_path / 'a' / 'tiles', tile_size=96)
    with pytest.raises(FileExistsError, match='arguments.min_visible'):
        make(tmp_path / 'a' / 'tiles', min_visible=0.6)
    assert {p: os.stat(Path(a.folder) / p).st_mtime_ns for p in files(a.folder)} == before  # untouched
    (tmp_path / 'foreign').mkdir()
    with pytest.raises(FileExistsError, match='not made by this tiler'):
        make(tmp_path / 'foreign')
    assert not [n for n in os.listdir(tmp_path / 'a') if n.startswith('.')]  # no temporary folder left


def test_refused_source_leaves_nothing(tmp_path):
    bad = source('b', [('car', 1, 1, 5, 5), ('boat', 1, 1, 9, 9)])
    with pytest.raises(VOCAnnotationError, match=r"b.xml: object 1 \(boat\): class 'boat'"):
        make(tmp_path / 'tiles', dict(a=source('a'), b=bad))
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match='would be in train and in val/test'):
        make(tmp_path / 'tiles', splits=dict(train=['a'], val=['a']))


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(tile_size=16), 'tile_size=16'),
        (dict(train_overlap=1.0), 'train_overlap=1.0'),
        (dict(min_visible=0), 'min_visible=0'),
        (dict(below_min_visible='keep'), "below_min_visible='keep'"),
        (dict(jpeg_quality=101), 'jpeg_quality=101'),
        (dict(max_tiles=0), 'max_tiles=0'),
        (dict(splits=dict(trainval=['a'])), 'use some of the splits'),
        (dict(splits=dict(train=['a', 'a'])), 'distinct source names'),
        (dict(splits=dict(train=['z'])), r"splits name sources that were not given: \['z'\]"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(tmp_path / 'tiles', **kwargs)
    with pytest.raises(ValueError, match="folder='..' is not allowed"):
        make('..')


def _make_at_once(folder: str, barrier) -> None:
    barrier.wait(timeout=60)
    make(folder)


def test_concurrent_runs_give_one_complete_folder(tmp_path):
    """Two processes (like two DDP ranks building their datasets) writing the same folder at once both succeed."""
    ctx = multiprocessing.get_context('fork')
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_make_at_once, args=(str(tmp_path / 'tiles' / ''), barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert os.listdir(tmp_path) == ['tiles']  # the loser discarded its copy
    reference = make(tmp_path / 'serial' / 'tiles')
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in Path(root).rglob('*') if p.is_file()}  # noqa: E731
    assert files(tmp_path / 'tiles') == files(reference.folder)


def test_fixes_are_recorded_and_max_tiles(tmp_path):
    fixed = source('b', [('car', 0, 1, 20, 20), ('tree', 5, 5, 5, 9)])
    result = make(tmp_path / 'tiles', dict(a=source('a'), b=fixed), max_tiles=2)
    assert result.fixes == [
        'b.xml: object 0 (car) box (0, 1, 20, 20): reaches outside the 300x250 image -> clipped to (1, 1, 20, 20)',
        'b.xml: object 1 (tree) box (5, 5, 5, 9): zero width or height (xmin == xmax or ymin == ymax) -> dropped',
    ]
    # 2 of the 12 training tiles (4 x 3) and of the 6 val tiles (3 x 2): numbers 3 and 9, 1 and 4, from 0
    assert result.splits == dict(
        train=['a_x00172_y00000', 'a_x00064_y00122'], val=['b_x00128_y00000', 'b_x00128_y00128'],
        test=['b_x00128_y00000', 'b_x00128_y00128'],
    )  # fmt: skip
    again = make(tmp_path / 'tiles', dict(a=source('a'), b=fixed), max_tiles=2)
    assert not again.created and again.fixes == result.fixes
    assert again.summary()[0] == f'annotation fixed (recorded in the manifest): {result.fixes[0]}'


def _make_and_die(folder: str, kill_after: int) -> None:
    """Tile and SIGKILL this process right after ``kill_after`` tiles were encoded (deterministic)."""
    import mmbasis.datasets.voc_tiles as voc_tiles

    sources = dict(a=source('a'), b=source('b', seed=1))
    real, done = voc_tiles.cv2.imencode, []

    def imencode(ext, img, params=()):
        done.append(ext)
        if len(done) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup code runs, as with `kill -9`
        return real(ext, img, params)

    voc_tiles.cv2.imencode = imencode
    make(folder, sources)


def test_killed_run_leaves_no_partial_folder(tmp_path):
    folder = tmp_path / 'tiles'
    proc = multiprocessing.get_context('fork').Process(target=_make_and_die, args=(str(folder), 5))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == -signal.SIGKILL and not folder.exists(), 'the kill must come mid-way'
    assert [n for n in os.listdir(tmp_path) if n.startswith('.tiles-partial-')]
    assert make(folder).created  # the next run writes it and ignores the dead run's temporary folder
    assert osp.isfile(folder / 'manifest.json')
