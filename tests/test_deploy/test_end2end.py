"""End-to-end deployable detectors: image in; boxes, scores, labels out (decoding and NMS in the graph), exported to
ONNX and run in onnxruntime and OpenVINO, checked against mmdet's predict in PyTorch (issue 21 point 5, issue 23)."""

import os.path as osp

import cv2
import mmdet
import numpy as np
import onnx
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmbasis  # noqa: F401
from mmbasis.datasets import draw_shapes_image, make_deepforest_voc
from mmbasis.datasets.deepforest import FOLDER
from mmbasis.deploy.end2end import End2EndDetector, default_input_shape
from mmbasis.deploy.runtime import check_runtimes, letterbox, match_detections, pytorch_detections
from tests.helpers import load_tool, randomize_bn
from tests.helpers.tiny import DEMO_CONFIG, NARROW_DEMO

tool = load_tool('tools/deployment/pytorch2onnx.py')
MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
SSD = 'configs/ssd/ssd300_r34-s48u1star-in1k_8xb8-120e_coco.py'
# the demo's Faster R-CNN (shared-basis ResNet-18, FPN) made narrow; SSD300 with ResNet34-S48U1* as it is
CASES = {
    'faster-rcnn': (DEMO_CONFIG, NARROW_DEMO, (160, 160)),
    'ssd': (SSD, {'model.backbone.init_cfg': None}, (300, 300)),
}
# a sigmoid-classifier single-stage head too (checked in PyTorch only)
RETINANET = """_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py']
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='SharedBasisResNet', depth=18, base_channels=16, shared_rank=4, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32, start_level=1, num_outs=5),
    bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1))
"""


def build(case: str, seed: int = 0, config: str = None, options: dict = None):
    """The case's detector, PyTorch's default initialisation and random BatchNorm statistics, training form."""
    config, options, _ = CASES[case] if config is None else (config, options or {}, None)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options)
    init_default_scope('mmdet')
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    randomize_bn(model, seed)
    return model.eval()


def image(shape, seed=0):
    return letterbox(draw_shapes_image(seed=seed, size=max(shape)), shape)[0]


def folded(model):
    import copy

    deploy = copy.deepcopy(model)
    deploy.backbone.switch_to_deploy()
    return deploy


@pytest.mark.parametrize('case', [*CASES, 'retinanet'])
def test_the_wrapper_computes_what_mmdet_predict_does(case, tmp_path):
    if case == 'retinanet':
        (tmp_path / 'retinanet.py').write_text(RETINANET)
        model, shape = build(case, config=str(tmp_path / 'retinanet.py')), (128, 128)
    else:
        model, shape = build(case), CASES[case][2]
    x = image(shape)
    net = End2EndDetector(folded(model), shape)
    with torch.no_grad():
        boxes, scores, labels = (t.numpy() for t in net(x))
    reference = pytorch_detections(model, x)  # the training form, as a user's mmdet inference runs it
    assert len(reference[1]) >= 5  # a non-trivial comparison
    cfg = net.test_cfg
    report = match_detections(reference, (boxes, scores, labels), 0.999, 1e-5, cfg.nms.iou_threshold, cfg.score_thr)
    # the same float32 kernels: at most a tie broken the other way (mmdet sorts candidates, the graph takes top-k)
    assert report.ok and report.matched + report.nms_ties == len(reference[1]) == len(scores), report.summary()
    assert report.matched >= len(scores) - 1
    assert boxes.dtype == np.float32 and labels.dtype == np.int64 and np.all(np.diff(scores) <= 0)


@pytest.mark.slow
@pytest.mark.parametrize('case', CASES)
def test_export_runs_in_onnxruntime_and_openvino_like_pytorch(case, tmp_path, capsys):
    config, options, shape = CASES[case]
    model = build(case)
    ckpt = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), ckpt)  # a training-form checkpoint
    out = str(tmp_path / f'{case}.onnx')
    cfg_options = [f'{k}={v}'.replace(' ', '') for k, v in options.items()]
    assert tool.main([config, out, '--checkpoint', ckpt, '--cfg-options', *cfg_options]) == 0
    printed = capsys.readouterr().out
    assert f'end-to-end detector of {config}, input 1x3x{shape[0]}x{shape[1]}' in printed  # the config's size
    assert 'onnxruntime  OK' in printed and 'openvino     OK' in printed
    graph = onnx.load(out).graph
    ops = {n.op_type for n in graph.node}
    assert 'NonMaxSuppression' in ops and ('RoiAlign' in ops) == (case == 'faster-rcnn')
    assert all(n.domain in ('', 'ai.onnx') for n in graph.node)  # standard operators only
    assert [i.name for i in graph.input] == ['image'] and [o.name for o in graph.output] == [
        'boxes',
        'scores',
        'labels',
    ]
    # another image, with tolerances tighter than the tool's defaults
    x = image(shape, seed=1)
    reference, reports = check_runtimes(out, model, End2EndDetector(folded(model), shape).test_cfg, x, score_tol=1e-5)
    assert len(reference) == 1 and len(reference[0][1]) >= 5
    for runtime, report in reports.items():
        assert report.ok and report.matched == len(reference[0][1]) and report.min_iou > 0.999, (
            runtime,
            report.summary(),
        )


@pytest.mark.parametrize('case', CASES)
def test_a_batch_gives_each_image_what_mmdet_predict_does(case):
    model, shape = build(case), CASES[case][2]
    x = torch.cat([image(shape, seed) for seed in (0, 1, 2)])  # three different images
    net = End2EndDetector(folded(model), shape, batch_size=3)
    with torch.no_grad():
        boxes, scores, labels = (t.numpy() for t in net(x))
    k = int(net.test_cfg.max_per_img)
    assert boxes.shape == (3, k, 4) and scores.shape == labels.shape == (3, k)
    cfg = net.test_cfg
    for i in range(3):
        real = labels[i] >= 0
        n = int(real.sum())
        assert real[:n].all() and not real[n:].any()  # detections first, then padding
        assert np.all(scores[i, n:] == 0) and np.all(boxes[i, n:] == 0)
        reference = pytorch_detections(model, x[i : i + 1])
        assert len(reference[1]) >= 5
        found = (boxes[i, :n], scores[i, :n], labels[i, :n])
        report = match_detections(reference, found, 0.999, 1e-5, cfg.nms.iou_threshold, cfg.score_thr)
        assert report.ok and report.matched + report.nms_ties == len(reference[1]) == n, (i, report.summary())
    # the images differ and so do their detections: each image was decoded from its own outputs
    assert not np.allclose(boxes[0], boxes[1]) and not np.allclose(boxes[1], boxes[2])


def test_a_batched_detector_refuses_inputs_of_another_shape():
    net = End2EndDetector(folded(build('faster-rcnn')), (160, 160), batch_size=2)
    with pytest.raises(ValueError, match=r'input of shape \(1, 3, 160, 160\) is not allowed: .* \(2, 3, 160, 160\)'):
        net(torch.zeros(1, 3, 160, 160))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=f'batch_size={bad!r} is not allowed: a positive integer'):
            End2EndDetector(build('faster-rcnn'), (160, 160), batch_size=bad)


@pytest.mark.slow
def test_a_batched_export_runs_in_onnxruntime_and_openvino_like_pytorch(tmp_path, capsys):
    config, options, shape = CASES['faster-rcnn']
    ckpt = str(tmp_path / 'epoch_1.pth')
    model = build('faster-rcnn')
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), ckpt)
    out = str(tmp_path / 'batch2.onnx')
    cfg_options = [f'{k}={v}'.replace(' ', '') for k, v in options.items()]
    assert tool.main([config, out, '--checkpoint', ckpt, '--batch', '2', '--cfg-options', *cfg_options]) == 0
    printed = capsys.readouterr().out
    assert f'input 2x3x{shape[0]}x{shape[1]}' in printed and 'generated shapes images (seeds 0-1)' in printed
    assert 'onnxruntime  OK' in printed and 'openvino     OK' in printed
    dims = [d.dim_value for d in onnx.load(out).graph.output[0].type.tensor_type.shape.dim]
    assert dims == [2, model.roi_head.test_cfg.max_per_img, 4]  # the config's max_per_img slots per image


def test_unsupported_detectors_and_sizes_are_refused_with_the_reason():
    cfg = Config.fromfile(osp.join(MMDET_CONFIGS, 'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'))
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    with pytest.raises(ValueError, match=r'FCOS \(FCOSHead, priors: MlvlPointGenerator\) is not supported'):
        End2EndDetector(MODELS.build(cfg.model), (64, 64))
    with pytest.raises(ValueError, match='input size 100 x 160 .* multiples of its pad_size_divisor 32'):
        End2EndDetector(build('faster-rcnn'), (100, 160))


def test_default_input_shape_is_the_configs_test_scale():
    assert default_input_shape(Config.fromfile(DEMO_CONFIG)) == (160, 160)
    assert default_input_shape(Config.fromfile(SSD)) == (300, 300)
    coco = Config.fromfile(osp.join(MMDET_CONFIGS, 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'))
    assert default_input_shape(coco) == (800, 1344)  # (1333, 800), keep_ratio, padded to 32


def test_letterbox_keeps_the_aspect_ratio_and_pads():
    img = np.full((50, 100, 3), 7, dtype=np.uint8)
    x, scale = letterbox(img, (64, 64))
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32 and scale == 0.64
    assert torch.all(x[..., :32, :] == 7) and torch.all(x[..., 32:, :] == 0)


def _dets(*rows):
    rows = np.array(rows, dtype=np.float32).reshape(-1, 6)
    return rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64)


A, B, C = [0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 10, 12]  # IoU(A, C) = 0.83


def test_matching_rules():
    ref = _dets([*A, 0.9, 1], [*B, 0.5, 2])
    same = match_detections(ref, _dets([*B, 0.5, 2], [*A, 0.9, 1]))  # order does not matter
    assert same.ok and same.matched == 2 and same.min_iou == 1.0
    # another label, another score, another box: named in the summary
    for other, what in [([*B, 0.5, 3], 'label 3'), ([*B, 0.6, 2], 'score 0.6'), ([*C, 0.5, 2], 'reference only')]:
        report = match_detections(ref, _dets([*A, 0.9, 1], other))
        assert not report.ok and what in report.summary()
    # equally scored boxes that NMS treats as one object: either may be kept
    tie = match_detections(_dets([*A, 0.5, 1]), _dets([*C, 0.5 + 1e-7, 1]), nms_iou=0.5)
    assert tie.ok and tie.nms_ties == 1
    # a detection at the score threshold, or at the cut of a full list, may fall on either side
    cut = match_detections(ref, _dets([*A, 0.9, 1]), score_thr=0.5 - 1e-6)
    assert cut.ok and cut.cutoff_ties == 1
    full = match_detections(ref, _dets([*A, 0.9, 1], [*C, 0.5, 2]), max_per_img=2, nms_iou=0.9)
    assert full.ok and full.cutoff_ties == 2
    # exactly equal scores are flagged: NMS orders them as each implementation likes
    saturated = match_detections(_dets([*A, 1.0, 1], [*B, 1.0, 1]), _dets([*A, 1.0, 1]))
    assert not saturated.ok and 'share their score exactly' in saturated.summary()


@pytest.mark.slow
def test_the_batched_export_is_checked_on_real_aerial_tiles(tmp_path, capsys):
    """Issue 23 point 1: the runtimes are checked against PyTorch on real images (tiles of the deepforest scenes,
    issue 25's dataset), not only on generated ones: natural image statistics, many overlapping candidates."""
    result = make_deepforest_voc(str(tmp_path / 'data'), tile_size=256, max_tiles=2)
    tiles = [str(tmp_path / 'data' / FOLDER / 'JPEGImages' / f'{name}.jpg') for name in result.splits['val'][:2]]
    config, options, shape = CASES['ssd']
    model = build('ssd')
    ckpt = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), ckpt)
    out = str(tmp_path / 'ssd_b2.onnx')
    cfg_options = [f'{k}={v}'.replace(' ', '') for k, v in options.items()]
    argv = [config, out, '--checkpoint', ckpt, '--batch', '2', '--image', *tiles, '--cfg-options', *cfg_options]
    assert tool.main(argv) == 0
    printed = capsys.readouterr().out
    assert f'checked on {tiles[0]}, {tiles[1]}: PyTorch (mmdet predict) found' in printed
    found = int(printed.split('PyTorch (mmdet predict) found ')[1].split()[0])
    assert found >= 10  # a non-trivial comparison: SSD keeps up to 200 detections per tile
    assert 'onnxruntime  OK' in printed and 'openvino     OK' in printed


def test_a_deployed_trees_detector_gets_standardised_images(tmp_path):
    """The trees configs standardise each tile in their test pipeline, outside the graph: the export's input
    preparation applies the same step, so the graph is checked (and documented) on what inference feeds it."""
    from mmbasis.deploy.runtime import image_steps, load_image
    from tests.helpers.tiny_data import CONFIG_ROOT

    trees = Config.fromfile(str(CONFIG_ROOT / 'deepforest' / 'faster-rcnn_r18-s16u1_slim-fpn_scratch-16e_trees.py'))
    steps = image_steps(trees)
    assert [type(t).__name__ for t in steps] == ['StandardizeImage']
    assert (
        image_steps(Config.fromfile(str(CONFIG_ROOT / 'pascal_voc' / 'faster-rcnn_r34-in1k_fpn_1x_voc0712.py'))) == []
    )
    rng = np.random.default_rng(0)
    path = str(tmp_path / 'dark.png')
    cv2.imwrite(path, np.clip(rng.normal(60, 15, (64, 64, 3)), 0, 255).astype(np.uint8))
    raw, _ = load_image(path, (64, 64))
    standardised, _ = load_image(path, (64, 64), steps)
    assert abs(float(raw.mean()) - 60) < 2 and abs(float(standardised.mean()) - 128) < 2
