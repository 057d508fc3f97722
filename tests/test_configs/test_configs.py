"""Every config under configs/ loads through mmengine (mmdet:: bases, custom_imports) and builds its model."""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbasis.utils import get_config_path
from mmdet.registry import MODELS

ROOT = Path(__file__).resolve().parents[2] / 'configs'
CONFIGS = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob('*.py'))


def test_there_are_configs():
    assert 'demo/faster-rcnn_r18-s16u1_slim-fpn_shapes.py' in CONFIGS
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds(name):
    cfg = Config.fromfile(str(ROOT / name))
    assert 'mmbasis' in cfg.custom_imports['imports']
    assert any(h['type'] == 'OrthogonalityRegularizerHook' for h in cfg.get('custom_hooks', []))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    assert model.backbone.basis_groups(), 'the backbone has shared bases'
    ds = cfg.train_dataloader.dataset
    ds = ds.get('dataset', ds)  # RepeatDataset wrappers
    if 'coco' in name:
        assert ds['type'] == 'CocoDataset' and ds['ann_file'].endswith('instances_train2017.json')
        assert cfg.val_evaluator['type'] == 'CocoMetric'
    elif 'voc' in name:
        datasets = ds.get('datasets', [ds])
        assert all(d['type'] == 'VOCDataset' for d in datasets)
        assert cfg.val_evaluator['type'] == 'VOCMetric'
    else:
        assert ds['type'] == 'SyntheticShapesDataset'
        assert cfg.val_evaluator['type'] == 'CocoMetric'


def test_get_config_path():
    path = get_config_path('demo/faster-rcnn_r18-s16u1_slim-fpn_shapes.py')
    assert Path(path).is_file()
    with pytest.raises(FileNotFoundError, match='did you mean'):
        get_config_path('demo/faster-rcnn_r18-s16u1_slim-fpn_shape.py')
