"""tools/image_demo.py and mmdet's DetInferencer on a real tile of the deepforest scenes (issue 25, item 6), with
the config the README names (the trees Faster R-CNN with the shared-basis ResNet-18 S16U1: tile standardisation in
its test pipeline, one class).

CI cannot train that detector (about half an hour on 2 cores), so the checkpoint holds its freshly built weights,
with the class names in ``meta.dataset_meta`` as mmengine's Runner writes them; the tests check what the README
promises about the outputs (drawing, JSON, class names), not the quality of the boxes. The trained detector's boxes
are shown on docs/studies/real_images.md (the picture and the study).
"""

import json

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import save_checkpoint

from mmbasis.datasets import make_deepforest_voc
from mmbasis.datasets.deepforest import FOLDER, TREE_CLASSES
from tests.helpers import load_tool
from tests.helpers.tiny_data import CONFIG_ROOT as ROOT

demo = load_tool('tools/image_demo.py')
TREES_CONFIG = 'deepforest/faster-rcnn_r18-s16u1_slim-fpn_scratch-16e_trees.py'
CONFIG_TEXT = """_base_ = '{base}'
"""


@pytest.fixture(scope='module')
def tile_config_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp('trees_demo')
    result = make_deepforest_voc(str(root), tile_size=256, max_tiles=1)
    tile = root / FOLDER / 'JPEGImages' / f'{result.splits["val"][0]}.jpg'
    config = root / 'faster-rcnn_r18-s16u1_trees.py'
    config.write_text(CONFIG_TEXT.format(base=ROOT / TREES_CONFIG))
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    ckpt = root / 'trees.pth'
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=TREE_CLASSES))), str(ckpt))
    return tile, config, ckpt


def check_predictions(preds_json, size: int = 256) -> None:
    preds = json.loads(preds_json.read_text())
    assert len(preds['labels']) == len(preds['scores']) == len(preds['bboxes']) > 0
    assert set(preds['labels']) == {0}  # the one class
    boxes = np.array(preds['bboxes'])
    assert (boxes[:, 2:] >= boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= size


@pytest.mark.slow
def test_image_demo_on_a_real_tile(tile_config_checkpoint, tmp_path, capsys):
    tile, config, ckpt = tile_config_checkpoint
    out = tmp_path / 'out'
    argv = [str(tile), str(config), '--weights', str(ckpt), '--out-dir', str(out), '--device', 'cpu']
    assert demo.main([*argv, '--pred-score-thr', '0.3']) == 0
    drawn = out / 'vis' / tile.name
    assert drawn.is_file() and cv2.imread(str(drawn)).shape == (256, 256, 3)
    check_predictions(out / 'preds' / f'{tile.stem}.json')
    assert str(out / 'vis') in capsys.readouterr().out


@pytest.mark.slow
def test_det_inferencer_on_a_real_tile(tile_config_checkpoint):
    from mmdet.apis import DetInferencer

    tile, config, ckpt = tile_config_checkpoint
    inferencer = DetInferencer(model=str(config), weights=str(ckpt), device='cpu', show_progress=False)
    assert inferencer.model.dataset_meta['classes'] == TREE_CLASSES  # from the checkpoint
    steps = [type(t).__name__ for t in inferencer.pipeline.transforms]
    assert steps[:2] == ['InferencerLoader', 'StandardizeImage']  # the config's test pipeline, on an image
    pred = inferencer(str(tile))['predictions'][0]
    assert len(pred['bboxes']) == len(pred['scores']) == len(pred['labels']) > 0
    assert set(pred['labels']) == {0}
