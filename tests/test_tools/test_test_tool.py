"""tools/test.py: our test command's own options (deploy checkpoints, --deploy, --calibrate) and its errors."""

import os.path as osp

import pytest
import torch
from mmengine.config import Config

import mmbasis  # noqa: F401
from mmbasis.deploy import build_detector
from mmbasis.deploy.folding import deploy_form
from mmbasis.models.layers import FactorizedConv2d
from tests.helpers import load_tool, randomize_bn
from tests.helpers.tiny import DEMO_CONFIG, NARROW_DEMO, run, tiny_options

CONFIG = DEMO_CONFIG


def test_test_tool_needs_deploy_for_calibrate(tmp_path):
    ckpt = tmp_path / 'x.pth'
    ckpt.write_bytes(b'')
    with pytest.raises(SystemExit, match='--calibrate chooses deploy forms: it needs --deploy'):
        load_tool('tools/test.py').main([CONFIG, str(ckpt), '--calibrate', '64', '64'])


def test_test_tool_names_an_unreadable_checkpoint(tmp_path):
    ckpt = tmp_path / 'broken.pth'
    ckpt.write_bytes(b'not a checkpoint')
    with pytest.raises(SystemExit, match=r"error: '.*broken.pth' is not a PyTorch checkpoint"):
        load_tool('tools/test.py').main([CONFIG, str(ckpt)])


@pytest.mark.slow
def test_mmdet_test_tool_refuses_a_deploy_checkpoint_of_other_forms_and_ours_reads_them(tmp_path):
    """mmdet's own tools/test.py with ``model.backbone.deploy=True`` but without the checkpoint's ``deploy_forms``
    used to run on with the convolutions of the other form left random (issue 21, point 4)."""
    import mmdet

    mmdet_test = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')

    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.merge_from_dict(NARROW_DEMO)
    torch.manual_seed(0)
    model = build_detector(cfg, deploy=False)
    randomize_bn(model)
    convs = {n: m for n, m in model.backbone.named_modules() if isinstance(m, FactorizedConv2d)}
    # every convolution in the form the multiply-add rule does not choose (as a calibration may measure)
    forms = {
        n: {'merged': 'factorized', 'factorized': 'merged'}[
            deploy_form(m.basis.in_channels, m.out_channels, m.basis.rank, m.basis.kernel_size)
        ]
        for n, m in convs.items()
    }
    model.backbone.set_deploy_forms(forms)
    model.eval().backbone.switch_to_deploy()
    ckpt = str(tmp_path / 'deploy.pth')
    torch.save(dict(meta=dict(deploy=True, deploy_forms=forms), state_dict=model.state_dict()), ckpt)
    options = tiny_options(str(tmp_path / 'data'))
    work = ['--work-dir', str(tmp_path / 'work')]

    theirs = run([mmdet_test, DEMO_CONFIG, ckpt, *work, '--cfg-options', *options,
                  'model.backbone.deploy=True'], expect_ok=False)  # fmt: skip
    assert theirs.returncode != 0 and 'coco/bbox_mAP' not in theirs.stdout + theirs.stderr
    assert 'SharedBasisResNet (deploy form) refuses' in theirs.stderr
    assert 'other deploy forms' in theirs.stderr and "meta['deploy_forms']" in theirs.stderr

    ours = run(['tools/test.py', DEMO_CONFIG, ckpt, *work, '--cfg-options', *options])
    out = ours.stdout + ours.stderr
    assert f'its {len(forms)} measured deploy forms' in out and 'coco/bbox_mAP' in out
