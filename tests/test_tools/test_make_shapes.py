"""tools/dataset_converters/make_shapes.py: the dataset CLI (run in-process: main(argv))."""

import json
import os.path as osp

import pytest

from tests.helpers.tiny import DEMO_CONFIG, load_tool

make_shapes = load_tool('tools/dataset_converters/make_shapes.py')


def test_generates_the_splits_of_a_config(tmp_path, capsys):
    data = str(tmp_path / 'data')
    opts = [
        f'train_dataloader.dataset.data_root={data}',
        'train_dataloader.dataset.num_images=3',
        'train_dataloader.dataset.img_size=40',
        f'val_dataloader.dataset.data_root={data}',
        'val_dataloader.dataset.num_images=2',
        'val_dataloader.dataset.img_size=40',
        f'test_dataloader.dataset.data_root={data}',
        'test_dataloader.dataset.num_images=2',
        'test_dataloader.dataset.img_size=40',
    ]
    assert make_shapes.main(['--config', DEMO_CONFIG, '--cfg-options', *opts]) == 0
    assert '2 split(s) ready' in capsys.readouterr().out
    with open(osp.join(data, 'train', 'annotation.json')) as f:
        assert len(json.load(f)['images']) == 3
    with open(osp.join(data, 'val', 'meta.json')) as f:
        assert json.load(f)['img_size'] == 40


def test_one_split_and_refusals(tmp_path, capsys):
    root = str(tmp_path)
    assert make_shapes.main(['--root', root, '--split', 'extra', '--num-images', '2', '--img-size', '32']) == 0
    assert osp.isfile(osp.join(root, 'extra', 'images', '000001.png'))
    assert make_shapes.main(['--root', root, '--split', 'extra', '--num-images', '3', '--img-size', '32']) == 1
    assert 'generated with other arguments' in capsys.readouterr().err
    assert make_shapes.main(['--root', root, '--num-images', '0']) == 1
    assert 'num_images=0' in capsys.readouterr().err
    assert make_shapes.main(['--config', str(tmp_path / 'missing.py')]) == 1
    assert 'does not exist' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        make_shapes.main(['--root', root, '--config', DEMO_CONFIG])
    assert exc.value.code == 2 and 'cannot be combined' in capsys.readouterr().err
