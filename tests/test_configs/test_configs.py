"""Every config under configs/ loads through mmengine (mmdet:: bases, custom_imports), builds its model on CPU,
computes a loss and predicts on a tiny batch; real-dataset configs keep mmdet's standard data settings and the
paper's backbone arguments."""
import ast
import inspect
from pathlib import Path
from typing import Optional

import mmdet
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

from mmbasis.paper_models import paper_backbone_cfg

ROOT = Path(__file__).resolve().parents[2] / 'configs'
CONFIGS = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob('*.py'))
MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'
# config-name token -> the paper model its backbone must be (paper_backbone_cfg)
PAPER_TOKENS = {'r34-s48u1star': 'ResNet34-S48U1*', 'r50-shared++': 'ResNet50-Shared++',
                'mobilenetv2-shared++': 'MobileNetV2-Shared++'}
DATA_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator')


def mmdet_base(path: Path) -> Optional[Path]:
    """The mmdet config that ``path`` inherits from (through relative ``_base_`` files), if any."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_' for t in node.targets):
            bases = ast.literal_eval(node.value)
            for base in [bases] if isinstance(bases, str) else bases:
                if base.startswith('mmdet::'):
                    found = MMDET_CONFIGS / base[len('mmdet::'):]
                else:
                    found = mmdet_base((path.parent / base).resolve())
                if found is not None and '_base_' not in found.parts:
                    return found
    return None


def without_scope(value):
    """``value`` without the ``_scope_`` keys mmengine adds to what an ``mmdet::`` base defines."""
    if isinstance(value, dict):
        return {k: without_scope(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(without_scope(v) for v in value)
    return value


def test_there_are_configs():
    assert 'demo/faster-rcnn_r18-s16u1_slim-fpn_shapes.py' in CONFIGS
    kinds = {k: [c for c in CONFIGS if k in c] for k in ('coco', 'voc', 'ssd', 'shapes')}
    assert all(kinds.values()), kinds


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_and_runs(name):
    cfg = Config.fromfile(str(ROOT / name))
    assert 'mmbasis' in cfg.custom_imports['imports'] and not cfg.custom_imports['allow_failed_imports']
    assert any(h['type'] == 'OrthogonalityRegularizerHook' for h in cfg.get('custom_hooks', []))
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    assert model.backbone.basis_groups(), 'the backbone has shared bases'

    head = cfg.model['bbox_head'] if 'bbox_head' in cfg.model else cfg.model['roi_head']['bbox_head']
    torch.manual_seed(0)
    data = demo_mm_inputs(2, [[3, 64, 64]] * 2, num_classes=head['num_classes'])
    model.train()
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total) and total > 0
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(data, False), mode='predict')
    assert len(results) == 2 and results[0].pred_instances.bboxes.shape[-1] == 4


@pytest.mark.parametrize('name', [c for c in CONFIGS if 'shapes' not in c])
def test_real_dataset_configs_keep_mmdet_data_settings(name):
    cfg = Config.fromfile(str(ROOT / name))
    base_path = mmdet_base(ROOT / name)
    assert base_path is not None and base_path.is_file(), f'{name} does not inherit an mmdet config'
    base = Config.fromfile(str(base_path))
    for key in DATA_KEYS:
        assert without_scope(cfg[key].to_dict() if hasattr(cfg[key], 'to_dict') else cfg[key]) == \
            without_scope(base[key].to_dict() if hasattr(base[key], 'to_dict') else base[key]), \
            f'{key} differs from {base_path.name}'
    ds = cfg.train_dataloader.dataset
    ds = ds.get('dataset', ds)  # RepeatDataset
    if 'coco' in name:
        assert ds['type'] == 'CocoDataset' and ds['ann_file'] == 'annotations/instances_train2017.json'
        assert cfg.val_evaluator['type'] == 'CocoMetric'
        assert cfg.val_evaluator['ann_file'].endswith('annotations/instances_val2017.json')
    else:
        assert 'voc' in name
        assert [d['ann_file'] for d in ds['datasets']] == ['VOC2007/ImageSets/Main/trainval.txt',
                                                           'VOC2012/ImageSets/Main/trainval.txt']
        assert all(d['type'] == 'VOCDataset' for d in ds['datasets'])
        assert cfg.val_dataloader.dataset['ann_file'] == 'VOC2007/ImageSets/Main/test.txt'
        assert cfg.val_evaluator['type'] == 'VOCMetric'


@pytest.mark.parametrize('name', [c for c in CONFIGS if any(t in c for t in PAPER_TOKENS)])
def test_backbones_are_the_paper_models(name):
    paper = paper_backbone_cfg(next(PAPER_TOKENS[t] for t in PAPER_TOKENS if t in name))
    backbone = Config.fromfile(str(ROOT / name)).model.backbone
    init_default_scope('mmdet')
    defaults = {k: p.default for k, p in inspect.signature(MODELS.get(paper['type']).__init__).parameters.items()}
    for key, value in paper.items():
        got = backbone.get(key, defaults.get(key))
        assert (list(got) if isinstance(got, (tuple, list)) else got) == \
            (list(value) if isinstance(value, (tuple, list)) else value), f'{key}: {got!r} != {value!r}'


def test_scratch_configs_train_every_layer():
    """Without ImageNet weights nothing may stay frozen or at ImageNet BN statistics."""
    scratch = [c for c in CONFIGS if 'scratch' in c or 'shapes' in c]
    assert scratch
    for name in scratch:
        backbone = Config.fromfile(str(ROOT / name)).model.backbone
        assert backbone.get('init_cfg') is None or backbone.init_cfg.get('type') != 'Pretrained', name
        assert backbone.get('frozen_stages', -1) == -1, name
        assert backbone.get('norm_eval', False) is False, name


def test_demo_config_uses_generated_data_and_coco_metric():
    cfg = Config.fromfile(str(ROOT / 'demo/faster-rcnn_r18-s16u1_slim-fpn_shapes.py'))
    train, val = cfg.train_dataloader.dataset, cfg.val_dataloader.dataset
    assert train.type == val.type == 'SyntheticShapesDataset'
    assert (train.split, val.split) == ('train', 'val') and train.seed != val.seed
    assert train.data_root == val.data_root and Path(train.data_root).is_absolute()
    assert cfg.val_evaluator.type == 'CocoMetric'
    assert Path(cfg.val_evaluator.ann_file) == Path(val.data_root) / 'val' / 'annotation.json'
    assert cfg.train_cfg.val_interval == cfg.train_cfg.max_epochs  # evaluated once, at the end
