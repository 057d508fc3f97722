"""tools/image_demo.py: inference the mmdet way (DetInferencer) with one of our configs and an mmengine checkpoint.

Nothing is trained: the checkpoint holds the freshly built weights of a shapes config plus the class names in
``meta.dataset_meta``, as mmengine's Runner writes them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import save_checkpoint

from tests.helpers import load_tool

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / 'configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py')
CLASSES = ('rectangle', 'ellipse', 'triangle')
demo = load_tool('tools/image_demo.py')


@pytest.fixture(scope='module')
def checkpoint_and_image(tmp_path_factory):
    root = tmp_path_factory.mktemp('image_demo')
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ckpt = root / 'shapes.pth'
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=CLASSES))), str(ckpt))
    image = np.full((160, 160, 3), 90, np.uint8)
    cv2.rectangle(image, (20, 30), (90, 110), (0, 200, 0), -1)
    cv2.circle(image, (120, 60), 25, (200, 0, 0), -1)
    path = root / 'shapes.png'
    cv2.imwrite(str(path), image)
    return ckpt, path


def check_predictions(preds_json: Path, image_size: int = 160) -> None:
    preds = json.loads(preds_json.read_text())
    assert set(preds) >= {'labels', 'scores', 'bboxes'}
    assert len(preds['labels']) == len(preds['scores']) == len(preds['bboxes']) > 0
    assert all(0 <= label < len(CLASSES) for label in preds['labels'])
    boxes = np.array(preds['bboxes'])
    assert boxes.shape[1] == 4 and (boxes[:, 2:] >= boxes[:, :2]).all() and boxes.max() <= image_size + 1


def test_image_demo_writes_drawing_and_json(checkpoint_and_image, tmp_path, capsys):
    ckpt, image = checkpoint_and_image
    out = tmp_path / 'out'
    code = demo.main(
        [
            str(image),
            CONFIG,
            '--weights',
            str(ckpt),
            '--out-dir',
            str(out),
            '--device',
            'cpu',
            '--pred-score-thr',
            '0.3',
        ]
    )
    assert code == 0
    drawn = out / 'vis' / 'shapes.png'
    assert drawn.is_file() and cv2.imread(str(drawn)).shape == (160, 160, 3)
    check_predictions(out / 'preds' / 'shapes.json')
    assert str(out / 'vis') in capsys.readouterr().out


def test_det_inferencer_directly(checkpoint_and_image, tmp_path):
    """mmdet's DetInferencer takes our config and checkpoint as they are (custom_imports imports mmbasis)."""
    from mmdet.apis import DetInferencer

    ckpt, image = checkpoint_and_image
    inferencer = DetInferencer(model=CONFIG, weights=str(ckpt), device='cpu', show_progress=False)
    assert inferencer.model.dataset_meta['classes'] == CLASSES
    result = inferencer(str(image), out_dir=str(tmp_path), no_save_pred=False)
    pred = result['predictions'][0]
    assert len(pred['bboxes']) == len(pred['scores']) > 0
    check_predictions(tmp_path / 'preds' / 'shapes.json')


@pytest.mark.slow
def test_det_inferencer_needs_no_import_of_mmbasis(checkpoint_and_image, tmp_path):
    """In a fresh interpreter that never imports mmbasis itself, the config's custom_imports is enough."""
    ckpt, image = checkpoint_and_image
    script = (
        'import sys\n'
        'from mmdet.apis import DetInferencer\n'
        'assert "mmbasis" not in sys.modules\n'
        f'inf = DetInferencer(model={CONFIG!r}, weights={str(ckpt)!r}, device="cpu", show_progress=False)\n'
        'assert "mmbasis" in sys.modules\n'
        f'res = inf({str(image)!r})\n'
        'print("boxes", len(res["predictions"][0]["bboxes"]))\n'
    )
    proc = subprocess.run(
        [sys.executable, '-c', script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONWARNINGS='ignore'),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'boxes ' in proc.stdout


@pytest.mark.parametrize(
    'argv, message',
    [
        (['missing.png', CONFIG, '--weights', 'w.pth'], "image 'missing.png' does not exist"),
        (['{image}', 'configs/nope.py', '--weights', 'w.pth'], "config file 'configs/nope.py' does not exist"),
        (['{image}', CONFIG, '--weights', 'nope.pth'], "checkpoint 'nope.pth' does not exist"),
        (['{image}', CONFIG, '--weights', '{ckpt}', '--pred-score-thr', '2'], '--pred-score-thr 2.0 is not allowed'),
    ],
)
def test_bad_arguments_are_named(argv, message, checkpoint_and_image, capsys):
    ckpt, image = checkpoint_and_image
    argv = [a.format(image=image, ckpt=ckpt) for a in argv]
    assert demo.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err


def test_weights_are_required(capsys):
    with pytest.raises(SystemExit) as e:
        demo.main(['img.png', CONFIG])
    assert e.value.code == 2 and '--weights' in capsys.readouterr().err


def test_deploy_flag_folds_after_loading_and_predicts_the_same(checkpoint_and_image, tmp_path):
    ckpt, image = checkpoint_and_image
    runs = {}
    for name, extra in (('train', []), ('deploy', ['--deploy'])):
        out = tmp_path / name
        argv = [str(image), CONFIG, '--weights', str(ckpt), '--out-dir', str(out), '--device', 'cpu']
        assert demo.main(argv + extra) == 0
        runs[name] = json.loads((out / 'preds' / 'shapes.json').read_text())
    assert runs['deploy']['labels'] == runs['train']['labels']
    np.testing.assert_allclose(runs['deploy']['scores'], runs['train']['scores'], atol=1e-4)
    np.testing.assert_allclose(runs['deploy']['bboxes'], runs['train']['bboxes'], atol=1e-2)
