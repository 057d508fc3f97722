"""tools/dataset_converters/voc_tiles.py (users' own VOC images) and deepforest_to_voc.py, run in-process."""

import os

import cv2
import pytest

from tests.helpers import load_tool
from tests.helpers.voc import BOXES, scene, voc_xml

voc_tiles = load_tool('tools/dataset_converters/voc_tiles.py')
deepforest_to_voc = load_tool('tools/dataset_converters/deepforest_to_voc.py')


def write_scene(folder, name, boxes=BOXES, seed=0, xml_folder=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f'{name}.png').write_bytes(scene(seed))
    xml_folder = xml_folder or folder
    xml_folder.mkdir(parents=True, exist_ok=True)
    (xml_folder / f'{name}.xml').write_bytes(voc_xml(boxes))
    return str(folder / f'{name}.png')


def test_tiles_users_images_and_refuses_other_arguments(tmp_path, capsys):
    train = write_scene(tmp_path / 'src', 'field a', seed=0)  # a space in the name: '_' in the tile ids
    val = write_scene(tmp_path / 'voc' / 'JPEGImages', 'b', seed=1, xml_folder=tmp_path / 'voc' / 'Annotations')
    out = str(tmp_path / 'out' / 'fields')
    argv = [out, '--classes', 'car', 'tree', '--train', train, '--val', val, '--test', val, '--tile-size', '128']
    assert voc_tiles.main(argv) == 0
    printed = capsys.readouterr().out
    assert f'{out}: written' in printed and 'val  : 6 tiles' in printed and 'annotation fixes: 0' in printed
    assert sorted(os.listdir(os.path.join(out, 'ImageSets', 'Main'))) == ['test.txt', 'train.txt', 'val.txt']
    first = open(os.path.join(out, 'ImageSets', 'Main', 'train.txt')).readline().strip()
    assert first == 'field_a_x00000_y00000'
    assert cv2.imread(os.path.join(out, 'JPEGImages', f'{first}.jpg')).shape == (128, 128, 3)
    assert voc_tiles.main(argv) == 0 and 'already there with the same arguments' in capsys.readouterr().out
    assert voc_tiles.main([*argv, '--min-visible', '0.7']) == 1
    err = capsys.readouterr().err
    assert 'made with other arguments' in err and "'arguments.min_visible': (0.5, 0.7)" in err


def test_user_errors_are_one_line(tmp_path, capsys):
    good = write_scene(tmp_path, 'a')
    bad = write_scene(tmp_path / 'bad', 'c', boxes=[('car', 50, 10, 20, 40)])
    out = str(tmp_path / 'out')
    assert voc_tiles.main([out, '--classes', 'car', 'tree', '--train', good, '--val', bad]) == 1
    err = capsys.readouterr().err
    assert err.startswith('voc_tiles: refused annotation: c.xml: object 0 (car): box (50, 10, 20, 40) is inverted')
    assert not os.path.exists(out)
    assert voc_tiles.main([out, '--classes', 'car', '--train', good]) == 1
    assert "class 'tree' is not one of the classes ('car',)" in capsys.readouterr().err
    lonely = tmp_path / 'lonely.png'
    lonely.write_bytes(scene())
    assert voc_tiles.main([out, '--classes', 'car', '--train', str(lonely)]) == 1
    assert f'no annotation for {lonely}: tried {tmp_path / "lonely.xml"}' in capsys.readouterr().err
    assert voc_tiles.main([out, '--classes', 'car', 'tree', '--train', good, '--tile-size', '8']) == 1
    assert 'tile_size=8 is not allowed' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        voc_tiles.main([out, '--classes', 'car'])
    assert exc.value.code == 2 and 'at least one split' in capsys.readouterr().err


@pytest.mark.slow
def test_deepforest_tool(tmp_path, capsys):
    """The real scenes at 128 px, 2 tiles per split (the wheel comes from the set-up's cache after the first run)."""
    out = str(tmp_path / 'trees')
    argv = ['--out-dir', out, '--tile-size', '128', '--max-tiles', '2']
    assert deepforest_to_voc.main(argv) == 0
    printed = capsys.readouterr().out
    assert 'YELL2019: written' in printed and 'train: 2 tiles' in printed and 'annotation fixes: 0' in printed
    assert deepforest_to_voc.main(argv) == 0 and 'already there' in capsys.readouterr().out
    assert deepforest_to_voc.main([*argv, '--train-overlap', '0.25']) == 1
    assert 'arguments.train_overlap' in capsys.readouterr().err
    assert deepforest_to_voc.main(['--out-dir', out, '--jpeg-quality', '0']) == 1
    assert 'jpeg_quality=0 is not allowed' in capsys.readouterr().err
