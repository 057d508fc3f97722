"""Every config under configs/ (except ``_base_``) loads through mmengine (``mmdet::`` bases, ``custom_imports``),
builds its detector on CPU, trains one iteration and predicts once through its real data pipeline and dataset class
on tiny generated data in the dataset's own format; real-dataset configs keep mmdet's data settings, shared-basis
backbones name the paper's models by arch, and the backbone recipes (ImageNet / from scratch) are mmdet's."""

import ast
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import mmdet
import pytest
import torch
from mmdet.registry import HOOKS, METRICS, MODELS
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from tests.helpers.tiny_data import (
    CONFIG_ROOT,
    CONFIGS,
    dataset_cfgs,
    point_to,
    quiet_logger,
    shrink,
    write_coco,
    write_voc,
)

REPO = Path(__file__).resolve().parents[2]
ROOT = CONFIG_ROOT
REAL = [c for c in CONFIGS if not c.startswith(('shapes/', 'deepforest/'))]  # the COCO/VOC zoo: mmdet's data
#: configs of our own datasets (generated shapes here; the real deepforest trees in test_voc_real_data.py)
OWN_DATA = [c for c in CONFIGS if not c.startswith('deepforest/')]
MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'
DATA_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator')
#: backbone token of a config name (without ``-in1k``) -> the paper model it must be
PAPER_TOKENS = {
    'r34-s48u1star': 'ResNet34-S48U1*',
    'r34-s16u1star': 'ResNet34-S16U1*',
    'r50-shared': 'ResNet50-Shared',
    'r50-shared++': 'ResNet50-Shared++',
    'r101-shared': 'ResNet101-Shared',
    'mobilenetv2-shared': 'MobileNetV2-Shared',
    'mobilenetv2-shared++': 'MobileNetV2-Shared++',
}
OUR_HOOKS = ('OrthogonalityRegularizerHook', 'FiniteLossHook')  # the hooks that act inside the model's forward
# Faster R-CNN's 1333x800 (VOC: 1000x600) Resize: at these scales the 30 train-and-predict tests took 7.5 minutes on
# this 2-core machine (batch 1), 5.3 minutes with the Resize scale of those configs reduced as below (the rest of the
# file adds half a minute). Only the scale changes: pipelines, dataset classes and annotation formats stay the
# configs'. SSD keeps its 300/512/320, and .dev_scripts/model_zoo.py runs every zoo model at its real test size.


def backbone_token(name: str) -> str:
    """``'faster_rcnn/faster-rcnn_r34-s48u1star-in1k_fpn_1x_coco.py'`` -> ``'r34-s48u1star'``."""
    token = Path(name).stem.split('_')[1]
    return token[: -len('-in1k')] if token.endswith('-in1k') else token


def mmdet_base(path: Path) -> Optional[Path]:
    """The mmdet config that ``path`` inherits from (through relative ``_base_`` files), if any."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_' for t in node.targets):
            bases = ast.literal_eval(node.value)
            for base in [bases] if isinstance(bases, str) else bases:
                if base.startswith('mmdet::'):
                    found = MMDET_CONFIGS / base[len('mmdet::') :]
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


def plain(value):
    """A config value as plain python (ConfigDict -> dict)."""
    return value.to_dict() if hasattr(value, 'to_dict') else value


@pytest.fixture(scope='module')
def data_roots(tmp_path_factory):
    """The tiny COCO, VOC and shapes data roots, written once for the module."""
    root = tmp_path_factory.mktemp('data')
    return write_coco(root), write_voc(root), root / 'shapes'


def test_there_are_configs():
    folders = {c.split('/')[0] for c in CONFIGS}
    assert {'faster_rcnn', 'ssd', 'pascal_voc', 'shapes'} <= folders, folders
    kinds = {k: [c for c in CONFIGS if k in c] for k in ('coco', 'voc0712', 'ssd300', 'ssd512', 'ssdlite', 'scratch')}
    assert all(kinds.values()), kinds


def pretrained(backbone: dict) -> bool:
    init = backbone.get('init_cfg')
    return isinstance(init, dict) and init.get('type') == 'Pretrained'


@pytest.mark.slow
@pytest.mark.parametrize('name', OWN_DATA)
def test_config_trains_and_predicts_on_its_data_format(name, data_roots):
    cfg = Config.fromfile(str(ROOT / name))  # imports custom_imports (mmbasis)
    assert cfg.custom_imports == dict(imports=['mmbasis'], allow_failed_imports=False)
    point_to(cfg, *data_roots)
    shrink(cfg)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))  # as mmengine's Runner does without distributed training
    if not pretrained(cfg.model.backbone):  # ImageNet weights are not on this machine; scratch inits must work
        with quiet_logger():
            model.init_weights()
    runner = SimpleNamespace(model=model, iter=0, epoch=0, message_hub=MessageHub.get_current_instance())
    hooks = [HOOKS.build(h) for h in cfg.get('custom_hooks', []) if h['type'] in OUR_HOOKS]
    for hook in hooks:
        hook.before_train(runner)

    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    assert len(loader.dataset) > 0, 'the tiny dataset was filtered away'
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    model.train()
    log_vars = model.train_step(next(iter(loader)), optim_wrapper)
    loss = float(log_vars['loss'].detach())
    assert math.isfinite(loss) and loss > 0, log_vars
    assert ('loss_orth' in log_vars) == any(h['type'] == 'OrthogonalityRegularizerHook' for h in cfg.custom_hooks)
    assert any(not torch.equal(b, p) for b, p in zip(before, trainable)), 'the optimizer step changed nothing'
    for hook in hooks:
        hook.after_train(runner)

    model.eval()
    val_loader = Runner.build_dataloader(cfg.val_dataloader)
    batch = next(iter(val_loader))
    with torch.no_grad():
        results = model.val_step(batch)
    assert len(results) == len(batch['inputs']) and results[0].pred_instances.bboxes.shape[-1] == 4
    metric = METRICS.build(cfg.val_evaluator)  # the evaluator reads the same annotations
    metric.dataset_meta = val_loader.dataset.metainfo
    metric.process(batch, [r.to_dict() for r in results])
    assert isinstance(metric.evaluate(len(results)), dict)  # empty when an untrained model predicts nothing


@pytest.mark.parametrize('name', REAL)
def test_real_dataset_configs_keep_mmdet_data_settings(name):
    cfg = Config.fromfile(str(ROOT / name))
    base_path = mmdet_base(ROOT / name)
    assert base_path is not None and base_path.is_file(), f'{name} does not inherit an mmdet config'
    base = Config.fromfile(str(base_path))
    for key in DATA_KEYS:
        ours, theirs = without_scope(plain(cfg[key])), without_scope(plain(base[key]))
        if key == 'train_dataloader':  # ours restart their workers every epoch (see test_training_workers_...)
            assert ours.pop('persistent_workers') is False
            theirs.pop('persistent_workers', None)
        assert ours == theirs, f'{key} differs from {base_path.name}'
    ds = next(dataset_cfgs(cfg.train_dataloader.dataset))
    if name.endswith('_coco.py'):
        assert ds['type'] == 'CocoDataset' and ds['ann_file'] == 'annotations/instances_train2017.json'
        assert ds['data_root'] == 'data/coco/' and cfg.val_evaluator['type'] == 'CocoMetric'
        assert cfg.val_evaluator['ann_file'] == 'data/coco/annotations/instances_val2017.json'
    else:
        assert name.endswith('_voc0712.py')
        train = list(dataset_cfgs(cfg.train_dataloader.dataset))
        assert [d['ann_file'] for d in train] == [
            'VOC2007/ImageSets/Main/trainval.txt',
            'VOC2012/ImageSets/Main/trainval.txt',
        ]
        assert all(d['type'] == 'VOCDataset' and d['data_root'] == 'data/VOCdevkit/' for d in train)
        assert cfg.val_dataloader.dataset['ann_file'] == 'VOC2007/ImageSets/Main/test.txt'
        assert cfg.val_evaluator['type'] == 'VOCMetric'


@pytest.mark.parametrize('name', [c for c in CONFIGS if backbone_token(c) in PAPER_TOKENS])
def test_backbones_name_the_paper_model_of_their_file_name(name):
    """A paper model is defined once (mmbasis.models.archs); a config takes it by ``arch``, the one its name says."""
    backbone = Config.fromfile(str(ROOT / name)).model.backbone
    assert backbone.get('arch') == PAPER_TOKENS[backbone_token(name)], name
    if backbone['type'] == 'SharedBasisMobileNetV2':  # the detectors use mmdet's MobileNetV2 layout
        assert backbone.get('variant') == 'mmdet', name


def test_every_shared_real_config_is_a_paper_model():
    shared = [c for c in REAL if backbone_token(c) not in ('r34', 'r50', 'r101', 'mobilenetv2')]
    assert shared and all(backbone_token(c) in PAPER_TOKENS for c in shared), shared


@pytest.mark.parametrize('name', CONFIGS)
def test_training_workers_are_not_persistent(name):
    """Exact ``--resume`` (README, Reliability): persistent training workers carry random state across epochs that no
    checkpoint can hold, so every config of ours restarts them each epoch (mmdet's COCO/VOC bases keep them)."""
    loader = Config.fromfile(str(ROOT / name)).train_dataloader
    assert not (loader.get('persistent_workers', False) and loader.get('num_workers', 0) > 0), loader


@pytest.mark.parametrize('name', [c for c in CONFIGS if 'scratch' in c])
def test_scratch_configs_train_every_layer(name):
    """Without ImageNet weights nothing may stay frozen, at ImageNet BN statistics, or start as an identity block."""
    backbone = Config.fromfile(str(ROOT / name)).model.backbone
    assert not pretrained(backbone), name
    assert backbone.get('frozen_stages', -1) == -1, name
    assert backbone.get('norm_eval', False) is False, name
    if 'ResNet' in backbone['type']:
        assert backbone.get('zero_init_residual') is False, name  # official init: every BN gamma = 1


@pytest.mark.parametrize('name', [c for c in CONFIGS if '-in1k' in c])
def test_imagenet_configs_use_mmdets_pretrained_recipe(name):
    backbone = Config.fromfile(str(ROOT / name)).model.backbone
    assert pretrained(backbone) and backbone.init_cfg.checkpoint, name
    assert backbone.frozen_stages == 1 and backbone.norm_eval is True, name
    if backbone['type'] == 'ResNet':
        assert backbone.init_cfg.checkpoint == f'torchvision://resnet{backbone["depth"]}', name


@pytest.mark.parametrize('name', [c for c in CONFIGS if Path(c).name.startswith('ssd')])
def test_ssd_feature_maps_fit_the_anchor_strides(name):
    """At the test input size each SSD level is ceil(size / anchor stride) wide, as with mmdet's VGG (300: 38, 19,
    10, 5, 3, 1; 512: 64 ... 1), and the head has one level per anchor stride."""
    cfg = Config.fromfile(str(ROOT / name))
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model).eval()
    anchors = cfg.model.bbox_head.anchor_generator
    size = anchors.get('input_size', 320)  # SSDLite sets no input_size: its test Resize is 320x320
    resize = next(t for t in next(dataset_cfgs(cfg.test_dataloader.dataset))['pipeline'] if t['type'] == 'Resize')
    if 'scale' in resize:
        assert tuple(resize['scale']) == (size, size)
    else:  # fixed-size tiles upscaled by a fixed factor (the deepforest trees): the anchors need only fit at `size`
        assert resize['scale_factor'] > 1 and 'deepforest' in name, name
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, size, size))
    assert [f.shape[-1] for f in feats] == [math.ceil(size / s) for s in anchors.strides]
    assert [f.shape[1] for f in feats] == list(cfg.model.bbox_head.in_channels)
