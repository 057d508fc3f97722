"""The real-image dataset: the deepforest wheel fetched with pip (hash-checked, cached) and its two Yellowstone
scenes tiled into Pascal VOC with the default arguments. The wheel is downloaded once into the set-up's cache
(PyPI must be reachable); the failure tests use a private cache."""

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mmdet.registry import DATASETS
from mmengine.registry import init_default_scope

from mmbasis.datasets import DeepForestTreesDataset, fetch_deepforest_wheel, make_deepforest_voc
from mmbasis.datasets.deepforest import FOLDER, VAL_IMAGE, WHEEL, WHEEL_SHA256, deepforest_sources
from mmbasis.datasets.voc_xml import read_objects
from tests.helpers import sha256


def test_a_cached_wheel_with_another_hash_is_refused(tmp_path):
    wheel = tmp_path / 'downloads' / WHEEL
    wheel.parent.mkdir()
    wheel.write_bytes(b'not the wheel')
    with pytest.raises(ValueError, match=f'SHA-256 {sha256(str(wheel))}, not the pinned {WHEEL_SHA256}; delete it'):
        fetch_deepforest_wheel(str(tmp_path))
    assert wheel.read_bytes() == b'not the wheel'  # left for the user to inspect


@pytest.mark.slow
def test_an_unreachable_registry_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('PIP_CONFIG_FILE', os.devnull)  # no other index or wheel folder from a pip configuration
    for name in ('PIP_EXTRA_INDEX_URL', 'PIP_FIND_LINKS'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('PIP_INDEX_URL', 'http://127.0.0.1:9/simple')  # nothing listens on the discard port
    monkeypatch.setenv('PIP_RETRIES', '0')
    monkeypatch.setenv('PIP_NO_CACHE_DIR', '1')
    with pytest.raises(RuntimeError, match=r'`pip download deepforest==2.1.0` did not give .*is PyPI reachable'):
        fetch_deepforest_wheel(str(tmp_path))
    assert os.listdir(tmp_path / 'downloads') == []  # no partial download left


@pytest.fixture(scope='module')
def default_root(tmp_path_factory):
    """The real scenes tiled with the default arguments (the wheel comes from the user's cache after the first run)."""
    root = tmp_path_factory.mktemp('deepforest')
    return root, make_deepforest_voc(str(root))


@pytest.mark.slow
def test_default_tiling_of_the_real_scenes(default_root):
    root, result = default_root
    assert result.created and result.fixes == []  # the two scenes' annotations need no fix
    assert {s: c['tiles'] for s, c in result.counts.items()} == dict(train=11 * 12, val=4 * 3, test=4 * 3)
    assert result.splits['val'] == result.splits['test']
    folder = root / FOLDER
    manifest = json.loads((folder / 'manifest.json').read_text())
    assert [s['objects'] for s in manifest['sources'].values()] == [574, 279]
    assert manifest['origin']['wheel_sha256'] == WHEEL_SHA256
    licence = (folder / 'LICENSE').read_text()
    assert licence.startswith('MIT License') and 'Copyright (c) 2019, Ben Weinstein' in licence
    assert 'MIT' in (folder / 'README.txt').read_text()
    # every tree of the validation scene is in the val tiles: its tile boxes, moved back, lie in it and cover it
    source = deepforest_sources(fetch_deepforest_wheel())[VAL_IMAGE]
    trees, _ = read_objects(source.annotation, source.annotation_file, ('Tree',), 1249, 1035)
    covered = {t.box: 0 for t in trees}
    for tile in result.splits['val']:
        left, top = (int(v) for v in re.fullmatch(r'.*_x(\d{5})_y(\d{5})', tile).groups())
        xml = (folder / 'Annotations' / f'{tile}.xml').read_bytes()
        for obj in read_objects(xml, tile, ('Tree',), 400, 400)[0]:
            x1, y1, x2, y2 = obj.box[0] + left, obj.box[1] + top, obj.box[2] + left, obj.box[3] + top
            clip = lambda t: (max(t[0], left + 1), max(t[1], top + 1), min(t[2], left + 400), min(t[3], top + 400))  # noqa: E731,B023
            owner = [t for t in covered if clip(t) == (x1, y1, x2, y2)]
            assert len(owner) == 1, f'{tile}: box {obj.box} is not the part of one tree of the scene in the tile'
            covered[owner[0]] += (x2 - x1 + 1) * (y2 - y1 + 1)
    # a tree loses area only where a 1-pixel row or column lies across a tile border (dropped: zero width for mmdet)
    sliver = lambda t: t[0] % 400 == 0 or t[1] % 400 == 0 or t[2] % 400 == 1 or t[3] % 400 == 1  # noqa: E731
    whole = {t: area == (t[2] - t[0] + 1) * (t[3] - t[1] + 1) for t, area in covered.items()}
    assert all(covered.values()) and all(whole[t] != sliver(t) for t in covered)


@pytest.mark.slow
def test_dataset_class_reads_the_tiles_and_refuses_other_arguments(default_root):
    root, result = default_root
    init_default_scope('mmdet')
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs'),
    ]
    train = DATASETS.build(dict(type='DeepForestTreesDataset', data_root=str(root), pipeline=pipeline))
    val = DeepForestTreesDataset(split='val', data_root=str(root), test_mode=True, pipeline=pipeline)
    assert isinstance(train, DeepForestTreesDataset) and len(train) == 132 and len(val) == 12
    sample = val[0]
    assert sample['inputs'].shape == (3, 400, 400)
    xml = ET.parse(Path(root) / FOLDER / 'Annotations' / f'{result.splits["val"][0]}.xml').getroot()
    assert len(sample['data_samples'].gt_instances) == sum(o.findtext('difficult') == '0' for o in xml.iter('object'))
    assert val.metainfo['classes'] == ('Tree',)
    with pytest.raises(FileExistsError, match='arguments.tile_size'):
        DeepForestTreesDataset(split='val', data_root=str(root), tile_size=256, pipeline=pipeline)
    with pytest.raises(ValueError, match="split='trainval'"):
        DeepForestTreesDataset(split='trainval', data_root=str(root))


@pytest.mark.slow
def test_scene_statistics_leave_the_padding_out(default_root):
    """What the trees recipe rests on (experiments/scene_statistics.py): the validation tiles at the scene's border
    are padded with black, the training tiles are not (only a few near-black shadow pixels); without the padding
    the validation scene is bluer, and StandardizeImage gives both splits the same statistics."""
    from experiments.scene_statistics import split_statistics

    root, _ = default_root
    train, val = (
        split_statistics(dict(type='DeepForestTreesDataset', data_root=str(root), split=s)) for s in ('train', 'val')
    )
    assert (train['images'], val['images']) == (132, 12)
    # the 1249x1035 scene in 4x3 tiles of 400: 1 - 1249 * 1035 / (1600 * 1200) = 32.7 % padding
    assert train['padding'] < 1e-4 and abs(val['padding'] - (1 - 1249 * 1035 / (1600 * 1200))) < 0.002
    assert val['mean'][0] - train['mean'][0] > 15 and (abs(val['mean'][1:] - train['mean'][1:]) < 10).all()
    for s in (train, val):
        assert (abs(s['std_mean'] - 128) < 3).all() and (abs(s['std_std'] - 50) < 3).all()
