"""Every Pascal VOC config of the zoo runs end to end on real annotated images: a tiny VOC folder made by the dataset
tool from the deepforest scenes (4 training and 4 validation tiles of 128 px, class ``Tree``), mmengine's Runner
for 2 training iterations, then mmdet's VOC evaluation in the validation and the test loop.

The configs are changed only as a user pointing them at this data would (``--cfg-options``): data root, ImageSets
file, folder, classes, one class in the head, no ImageNet weights (not on this machine), small Resize scale and
batches, and for CPU time 100 RoIs per image in Faster R-CNN (1000 in the configs); pipelines, dataset classes
(``VOCDataset`` in mmdet's Repeat/Concat wrappers), hooks and evaluator stay the configs'. The deepforest wheel is
downloaded once into the set-up's cache (PyPI must be reachable)."""

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import mmdet.evaluation.metrics.voc_metric as voc_metric
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmbasis.datasets import make_deepforest_voc
from mmbasis.datasets.deepforest import FOLDER, TREE_CLASSES
from tests.helpers.tiny_data import CONFIG_ROOT as ROOT
from tests.helpers.tiny_data import CONFIGS, dataset_cfgs, quiet_logger, shrink

VOC_CONFIGS = [c for c in CONFIGS if c.startswith('pascal_voc/')]
TREES_CONFIGS = [c for c in CONFIGS if c.startswith('deepforest/')]
TILES = 4


@pytest.fixture(scope='module')
def trees(tmp_path_factory):
    """The data root of a tiny tiled deepforest VOC folder, made by the tool's function."""
    root = tmp_path_factory.mktemp('trees')
    result = make_deepforest_voc(str(root), tile_size=128, max_tiles=TILES)
    assert result.counts['train']['tiles'] == result.counts['val']['tiles'] == TILES
    return root


def ground_truth(root: Path, split: str):
    """Per tile of ``split`` the boxes the VOC metric must evaluate (not difficult) and must ignore (difficult),
    read from the XML files, in mmdet's 0-based coordinates (VOC minus one)."""
    tiles = (root / FOLDER / 'ImageSets' / 'Main' / f'{split}.txt').read_text().split()
    out = {}
    for tile in tiles:
        boxes = {0: [], 1: []}
        for obj in ET.parse(root / FOLDER / 'Annotations' / f'{tile}.xml').getroot().iter('object'):
            assert obj.findtext('name') == 'Tree'
            box = [int(obj.findtext(f'bndbox/{k}')) - 1 for k in ('xmin', 'ymin', 'xmax', 'ymax')]
            boxes[int(obj.findtext('difficult'))].append(box)
        out[tile] = boxes
    return out


def point_to_trees(cfg: Config, root: Path, work_dir: Path) -> None:
    """What a user's --cfg-options would change to train and test a VOC config on the tiled trees."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        split = 'train' if loader == 'train_dataloader' else 'val'
        for ds in dataset_cfgs(cfg[loader]['dataset']):
            assert ds['type'] == 'VOCDataset'
            ds.update(
                data_root=f'{root}/',
                ann_file=f'{FOLDER}/ImageSets/Main/{split}.txt',
                data_prefix=dict(sub_data_root=f'{FOLDER}/'),
                metainfo=dict(classes=TREE_CLASSES),
            )
    head = cfg.model.roi_head.bbox_head if 'roi_head' in cfg.model else cfg.model.bbox_head
    head.num_classes = 1
    if 'roi_head' in cfg.model:  # 100 RoIs instead of 1000 (512 sampled in training): the RoI head's CPU time
        cfg.model.train_cfg.rpn_proposal.max_per_img = 100
        cfg.model.train_cfg.rcnn.sampler.num = 64
        cfg.model.test_cfg.rpn.max_per_img = 100
    cfg.model.backbone.init_cfg = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=0)
    cfg.launcher = 'none'


@pytest.mark.slow
@pytest.mark.parametrize('name', VOC_CONFIGS)
def test_voc_config_trains_and_evaluates_on_real_tiles(name, trees, tmp_path, monkeypatch):
    cfg = Config.fromfile(str(ROOT / name))
    point_to_trees(cfg, trees, tmp_path)
    shrink(cfg)
    evaluated = []  # what mmdet's VOCMetric handed to eval_map, and its answer

    def eval_map_spy(det_results, annotations, **kwargs):
        out = real_eval_map(det_results, annotations, **kwargs)
        evaluated.append((annotations, kwargs, out))
        return out

    real_eval_map = voc_metric.eval_map
    monkeypatch.setattr(voc_metric, 'eval_map', eval_map_spy)
    with quiet_logger():
        runner = Runner.from_cfg(cfg)
        runner.train()
        loss = runner.message_hub.get_scalar('train/loss').current()
        metrics = runner.test()
    assert math.isfinite(loss) and loss > 0
    assert runner.iter == 2 and len(runner.train_dataloader.dataset) > 0
    assert runner.test_dataloader.dataset.metainfo['classes'] == TREE_CLASSES
    assert 0 <= metrics['pascal_voc/mAP'] <= 1
    assert len(evaluated) == 2  # validation at the end of training, then the test loop
    truth = ground_truth(trees, 'val')
    assert sum(len(b[0]) for b in truth.values()) > 0, 'the validation tiles hold no trees'
    for annotations, kwargs, (_, per_class) in evaluated:
        assert kwargs['iou_thr'] == 0.5 and kwargs['eval_mode'] == '11points'  # the configs' VOC07 metric
        assert tuple(kwargs['dataset']) == TREE_CLASSES  # not 'voc': the folder name has no VOC year
        assert len(annotations) == len(truth)
        for ann, boxes in zip(annotations, truth.values()):  # the real boxes, in the order of val.txt
            np.testing.assert_array_equal(ann['bboxes'], np.array(boxes[0], np.float32).reshape(-1, 4))
            np.testing.assert_array_equal(ann['bboxes_ignore'], np.array(boxes[1], np.float32).reshape(-1, 4))
        assert per_class[0]['num_gts'] == sum(len(b[0]) for b in truth.values())


def test_trees_configs_inherit_the_zoos_voc_configs():
    """configs/deepforest/: one per cell of the real-image study, each on top of a Pascal VOC config of the zoo."""
    assert len(TREES_CONFIGS) == 9, TREES_CONFIGS  # Faster R-CNN 5, SSD 2, RetinaNet 2
    for name in TREES_CONFIGS:
        text = (ROOT / name).read_text()
        assert "'../pascal_voc/" in text or "'./" in text, name  # the plain ones name the zoo's VOC config
        cfg = Config.fromfile(str(ROOT / name))
        kinds = {e['type'] for e in cfg.val_evaluator}
        assert kinds == {'VOCMetric', 'CocoMetric'}, name  # VOC mAP and COCO AP by object size
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            assert all(d['type'] == 'DeepForestTreesDataset' for d in dataset_cfgs(cfg[loader]['dataset']))
        head = cfg.model.roi_head.bbox_head if 'roi_head' in cfg.model else cfg.model.bbox_head
        assert head.num_classes == 1


@pytest.mark.slow
@pytest.mark.parametrize('name', TREES_CONFIGS)
def test_trees_config_trains_and_evaluates_on_real_tiles(name, trees, tmp_path):
    """Each config of the real-image study as it is, on the tiny tile folder (its tiling arguments), for 2
    iterations, then validation and test with both metrics."""
    cfg = Config.fromfile(str(ROOT / name))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for ds in dataset_cfgs(cfg[loader]['dataset']):
            ds.update(data_root=f'{trees}/', tile_size=128, max_tiles=TILES)
    if 'roi_head' in cfg.model:
        cfg.model.train_cfg.rpn_proposal.max_per_img = 100
        cfg.model.test_cfg.rpn.max_per_img = 100
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(tmp_path)
    cfg.launcher = 'none'
    shrink(cfg)
    with quiet_logger():
        runner = Runner.from_cfg(cfg)
        runner.train()
        loss = runner.message_hub.get_scalar('train/loss').current()
        metrics = runner.test()
    assert math.isfinite(loss) and loss > 0
    assert ('train/loss_orth' in runner.message_hub.log_scalars) == ('s48u1star' in name or 's16u1' in name)
    assert 0 <= metrics['pascal_voc/mAP'] <= 1
    # CocoMetric returns no keys when 2 iterations of a model from scratch predict nothing at all; when it has
    # results it reports AP by object size (the study's small-object AP)
    if 'coco/bbox_mAP' in metrics:
        assert -1 <= metrics['coco/bbox_mAP_s'] <= 1
