from pathlib import Path

import pytest

from mmbasis.utils import config_path, get_config_path

REPO = Path(__file__).resolve().parents[2]


def test_finds_repo_configs():
    path = get_config_path('shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py')
    assert Path(path) == REPO / 'configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'


def test_missing_config_lists_close_matches():
    with pytest.raises(
        FileNotFoundError, match='did you mean: shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'
    ):
        get_config_path('shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shape.py')
    with pytest.raises(FileNotFoundError, match='available: .*faster_rcnn/'):
        get_config_path('zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz.py')


def test_installed_layout_uses_mim_configs(tmp_path, monkeypatch):
    """In a wheel there is no repo configs/ next to the package, only mmbasis/.mim/configs."""
    pkg = tmp_path / 'site-packages' / 'mmbasis'
    (pkg / 'utils').mkdir(parents=True)
    cfg = pkg / '.mim' / 'configs' / 'demo' / 'x.py'
    cfg.parent.mkdir(parents=True)
    cfg.write_text('a = 1\n')
    monkeypatch.setattr(config_path, '__file__', str(pkg / 'utils' / 'config_path.py'))
    assert get_config_path('demo/x.py') == str(cfg)
    cfg.unlink()
    (pkg / '.mim' / 'configs' / 'demo').rmdir()
    (pkg / '.mim' / 'configs').rmdir()
    with pytest.raises(FileNotFoundError, match='reinstall mmbasis'):
        get_config_path('demo/x.py')


@pytest.mark.parametrize('name', [None, '', 'demo/faster-rcnn_r18-s16u1_slim-fpn_shapes'])
def test_invalid_names(name):
    with pytest.raises(ValueError, match='relative to configs/'):
        get_config_path(name)


def test_read_config_from_several_threads():
    """The sharing study reads two configs at once; mmengine's parser alone raised TypeError from pkg_resources."""
    import threading

    from mmbasis.utils.cli import read_config

    names = ['faster-rcnn_r34-s47u1star', 'faster-rcnn_r34-s15u1star', 'faster-rcnn_r18', 'faster-rcnn_r34']
    errors, types = [], []

    def read(name):
        try:
            for _ in range(3):
                types.append(read_config(str(REPO / f'configs/shapes/{name}_slim-fpn_scratch-8e_shapes.py')).model.type)
        except Exception as e:  # noqa: BLE001 - collected and reported by the assertion
            errors.append(f'{name}: {e!r}')

    threads = [threading.Thread(target=read, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert types == ['FasterRCNN'] * 12
