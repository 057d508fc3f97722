"""experiments/predictions_picture.py: ground truth next to predictions, drawn by mmdet's visualiser."""

import cv2
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import save_checkpoint

from experiments import predictions_picture as picture
from tests.helpers.tiny_data import CONFIG_ROOT

CONFIG = CONFIG_ROOT / 'shapes' / 'faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'


@pytest.fixture(scope='module')
def config_and_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp('picture')
    config = root / 'shapes.py'
    config.write_text(
        f"_base_ = '{CONFIG}'\nval_dataloader = dict(dataset=dict(data_root='{root}/shapes/', num_images=3))\n"
    )
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    ckpt = root / 'model.pth'
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict()), str(ckpt))
    return config, ckpt


def test_picture_has_one_row_per_image_with_truth_and_predictions(config_and_checkpoint, tmp_path):
    config, ckpt = config_and_checkpoint
    out = tmp_path / 'picture.jpg'
    assert picture.main([str(config), str(ckpt), str(out), '--images', '2', '--score-thr', '0.0']) == 0
    image = cv2.imread(str(out))
    # the shapes validation images are 160x160: two panels (truth, predictions) side by side, 2 rows + 8 px gaps
    assert image.shape == (2 * (160 + 8), 2 * 160, 3)


def test_images_with_most_boxes_are_picked_in_dataset_order():
    class Fake:
        sizes = [1, 5, 3, 5, 0]

        def __len__(self):
            return len(self.sizes)

        def get_data_info(self, i):
            return dict(instances=[{}] * self.sizes[i])

    assert picture.pick(Fake(), 2) == [1, 3]
    assert picture.pick(Fake(), 3) == [1, 2, 3]


def test_bad_arguments_are_refused(config_and_checkpoint, tmp_path, capsys):
    config, ckpt = config_and_checkpoint
    with pytest.raises(SystemExit):
        picture.main([str(config), str(tmp_path / 'none.pth'), str(tmp_path / 'p.jpg')])
    assert 'no such file' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        picture.main([str(config), str(ckpt), str(tmp_path / 'p.jpg'), '--images', '0'])
    assert '--images 0 must be >= 1' in capsys.readouterr().err
