"""FixedSSDHead: mmdet 3.3's SSDHead with working predict(), same parameters."""

import torch
from mmdet.models.dense_heads import SSDHead
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope

from mmbasis.models.dense_heads import FixedSSDHead

HEAD = dict(
    num_classes=3,
    in_channels=(8, 16),
    stacked_convs=0,
    feat_channels=8,
    use_depthwise=True,
    anchor_generator=dict(
        type='SSDAnchorGenerator',
        scale_major=False,
        strides=[16, 32],
        ratios=[[2, 3]] * 2,
        min_sizes=[16, 32],
        max_sizes=[32, 64],
    ),
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[0.1, 0.1, 0.2, 0.2]),
    test_cfg=ConfigDict(
        nms_pre=100, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0, score_thr=0.02, max_per_img=10
    ),
)


def _predict(head):
    torch.manual_seed(0)
    feats = (torch.rand(1, 8, 4, 4), torch.rand(1, 16, 2, 2))
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1.0, 1.0)))
    return head.predict(feats, [sample], rescale=False)


def test_same_parameters_and_working_predict():
    """Same keys and shapes as mmdet's SSDHead, and the same predictions as mmdet's SSDHead would give with
    ``loss_cls`` defined (whether or not the installed mmdet still lacks it)."""
    init_default_scope('mmdet')
    torch.manual_seed(0)
    stock = SSDHead(**HEAD)
    fixed = FixedSSDHead(**HEAD)
    assert {k: v.shape for k, v in stock.state_dict().items()} == {k: v.shape for k, v in fixed.state_dict().items()}
    fixed.load_state_dict(stock.state_dict())
    stock.loss_cls = None  # what the fix provides, set by hand on mmdet's own head as the reference
    stock.eval(), fixed.eval()
    expected = _predict(stock)[0]
    result = _predict(fixed)[0]
    assert torch.equal(result.bboxes, expected.bboxes) and torch.equal(result.scores, expected.scores)
    assert len(result.bboxes) <= 10 and result.bboxes.shape[-1] == 4
    assert ((result.labels >= 0) & (result.labels < 3)).all()


def test_registered_by_import_mmbasis_alone():
    """One import registers everything, the SSD head included (a fresh interpreter: nothing imported before)."""
    import subprocess
    import sys

    code = (
        'import mmbasis\nfrom mmdet.registry import HOOKS, LOG_PROCESSORS, MODELS\n'
        "assert MODELS.get('FixedSSDHead') and MODELS.get('SharedBasisResNet')\n"
        "assert MODELS.get('SharedBasisMobileNetV2')\n"
        "assert HOOKS.get('OrthogonalityRegularizerHook') and HOOKS.get('FiniteLossHook')\n"
        "assert HOOKS.get('SafeCheckpointHook') and LOG_PROCESSORS.get('ReadableLogProcessor')\n"
    )
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
