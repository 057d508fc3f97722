"""tools/model_converters/switch_to_deploy.py: trained detector checkpoint -> deploy checkpoint."""

import copy
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner import load_checkpoint
from torch.nn.modules.batchnorm import _BatchNorm

import mmbasis  # noqa: F401
from mmbasis.models.layers import BasisConv2d, FactorizedConv2d
from mmbasis.utils import CheckpointFormatError
from tests.helpers import load_tool, randomize_bn, sha256

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'switch_to_deploy.py')
TOOL_MODULE = load_tool('tools/model_converters/switch_to_deploy.py')
build_detector = TOOL_MODULE.build_detector
convert_checkpoint_to_deploy = TOOL_MODULE.convert_checkpoint_to_deploy

R18_S4U1 = dict(
    type='SharedBasisResNet',
    depth=18,
    base_channels=16,
    shared_rank=4,
    unique_rank=1,
    basis_sharing='conv',
    norm_eval=False,
    init_cfg=None,
)
MBV2_PP = dict(
    type='SharedBasisMobileNetV2',
    widen_factor=0.5,
    shared_convs=('expand_conv', 'linear_conv'),
    with_eca=True,
    out_indices=(1, 2, 4, 7),
    init_cfg=None,
)


def write_config(tmp_path, backbone: dict, in_channels, name='cfg.py') -> str:
    """A small RetinaNet config around ``backbone`` (inherits mmdet's model base)."""
    text = f"""_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py']
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)
default_scope = 'mmdet'
model = dict(
    backbone=dict(_delete_=True, **{backbone!r}),
    neck=dict(in_channels={list(in_channels)!r}, out_channels=32, start_level=1, num_outs=5),
    bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1))
"""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def make_training_checkpoint(cfg_path: str, path: str, seed: int = 0) -> torch.nn.Module:
    """A checkpoint as mmengine's CheckpointHook writes it (meta, state_dict, optimizer, message hub)."""
    torch.manual_seed(seed)
    model = build_detector(Config.fromfile(cfg_path), deploy=False)  # PyTorch default init + random BN below
    with torch.no_grad():
        randomize_bn(model, seed)
    hub = MessageHub.get_instance('test_switch_to_deploy')
    hub.update_scalar('train/loss', 1.5)  # -> a HistoryBuffer holding numpy arrays in the checkpoint
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    torch.save(
        dict(
            meta=dict(epoch=2, iter=40, dataset_meta=dict(classes=('a', 'b', 'c'))),
            state_dict=model.state_dict(),
            optimizer=optim.state_dict(),
            message_hub=hub.state_dict(),
            param_schedulers=[],
        ),
        path,
    )
    return model.eval()


def detector_outputs(model, x):
    with torch.no_grad():
        cls, reg = model(x, mode='tensor')
    return list(cls) + list(reg)


def max_rel_diff(a, b):
    return max(((u - v).abs().max() / v.abs().max()).item() for u, v in zip(a, b))


@pytest.mark.slow
def test_cli_deploy_checkpoint_equals_training_model(tmp_path):
    cfg_path = write_config(tmp_path, R18_S4U1, [16, 32, 64, 128])
    ckpt, out = str(tmp_path / 'epoch_2.pth'), str(tmp_path / 'deploy' / 'epoch_2_deploy.pth')
    trained = make_training_checkpoint(cfg_path, ckpt)
    sha = sha256(ckpt)
    r = subprocess.run(
        [sys.executable, TOOL, cfg_path, ckpt, out], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert 'reads the deploy settings from its meta' in r.stdout and 'backbone=dict(deploy=True)' in r.stdout
    assert 'optimizer' in r.stdout  # reported as not carried over
    assert sha256(ckpt) == sha

    saved = torch.load(out, map_location='cpu', weights_only=True)
    assert set(saved) == {'meta', 'state_dict'}
    assert saved['meta']['deploy'] is True and saved['meta']['dataset_meta']['classes'] == ('a', 'b', 'c')
    assert saved['meta']['epoch'] == 2

    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict({'model.backbone.deploy': True})
    deployed = build_detector(cfg, deploy=False)  # deploy comes from the config override, as on the command line
    load_checkpoint(deployed, out, map_location='cpu', strict=True)
    deployed.eval()
    bb = deployed.backbone
    assert bb.deploy and not bb.basis_groups()
    assert not any(isinstance(m, (_BatchNorm, BasisConv2d, FactorizedConv2d)) for m in bb.modules())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert max_rel_diff(detector_outputs(deployed, x), detector_outputs(trained, x)) < 1e-4


@pytest.mark.slow
def test_cli_calibrated_forms_are_recorded_and_rebuilt(tmp_path):
    cfg_path = write_config(tmp_path, R18_S4U1, [16, 32, 64, 128])
    ckpt, out = str(tmp_path / 'epoch_2.pth'), str(tmp_path / 'deploy.pth')
    trained = make_training_checkpoint(cfg_path, ckpt)
    r = subprocess.run(
        [sys.executable, TOOL, cfg_path, ckpt, out, '--calibrate', '64', '64'],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    forms = torch.load(out, map_location='cpu', weights_only=True)['meta']['deploy_forms']
    names = [n for n, m in trained.backbone.named_modules() if isinstance(m, FactorizedConv2d)]
    assert sorted(forms) == sorted(names) and set(forms.values()) <= {'merged', 'factorized'}
    assert 'deploy forms measured:' in r.stdout and 'deploy_forms=' in r.stdout
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict({'model.backbone.deploy': True, 'model.backbone.deploy_forms': forms})
    deployed = build_detector(cfg, deploy=False)
    load_checkpoint(deployed, out, map_location='cpu', strict=True)  # the recorded forms rebuild the structure
    deployed.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert max_rel_diff(detector_outputs(deployed, x), detector_outputs(trained, x)) < 1e-4
    test_tool = load_tool('tools/test.py')
    cfg_test = Config.fromfile(cfg_path)
    test_tool.apply_deploy_meta(cfg_test, out)  # what tools/test.py does with a deploy checkpoint
    assert cfg_test.model.backbone.deploy is True and cfg_test.model.backbone.deploy_forms == forms
    cfg_train = Config.fromfile(cfg_path)
    test_tool.apply_deploy_meta(cfg_train, ckpt)  # a training checkpoint changes nothing
    assert 'deploy' not in cfg_train.model.backbone


def test_mobilenet_shared_pp_eca_deploy(tmp_path):
    cfg_path = write_config(tmp_path, MBV2_PP, [16, 16, 48, 1280])
    ckpt, out = str(tmp_path / 'mbv2.pth'), str(tmp_path / 'mbv2_deploy.pth')
    trained = make_training_checkpoint(cfg_path, ckpt, seed=3)
    report = convert_checkpoint_to_deploy(Config.fromfile(cfg_path), ckpt, out, check_shape=(32, 32))
    assert report.num_tensors_after < report.num_tensors_before
    assert report.max_abs_diff <= 1e-4 * max(report.max_abs_ref, 1.0)
    assert set(report.dropped_keys) == {'optimizer', 'message_hub', 'param_schedulers'}
    deployed = build_detector(Config.fromfile(cfg_path), deploy=True)
    load_checkpoint(deployed, out, map_location='cpu', strict=True)
    deployed.eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert max_rel_diff(detector_outputs(deployed, x), detector_outputs(trained, x)) < 1e-4


def test_cli_errors(tmp_path, capsys):
    main = TOOL_MODULE.main
    cfg_path = write_config(tmp_path, R18_S4U1, [16, 32, 64, 128])
    ckpt = str(tmp_path / 'ckpt.pth')
    make_training_checkpoint(cfg_path, ckpt)
    out = str(tmp_path / 'out.pth')

    def run(*args):
        code = main(list(args))
        return code, capsys.readouterr().err

    plain = dict(type='ResNet', depth=18, base_channels=16, init_cfg=None)
    code, err = run(write_config(tmp_path, plain, [16, 32, 64, 128], 'plain.py'), ckpt, out)
    assert code == 1 and 'has no switch_to_deploy' in err  # (checked before the keys)
    code, err = run(cfg_path, ckpt, out, '--cfg-options', 'model.backbone.deploy=True')
    assert code == 1 and 'already builds the deploy structure' in err
    other = dict(R18_S4U1, shared_rank=8)
    code, err = run(write_config(tmp_path, other, [16, 32, 64, 128], 'other.py'), ckpt, out)
    assert code == 1 and 'does not fit the model of the config' in err
    code, err = run(cfg_path, ckpt, ckpt)
    assert code == 1 and 'input checkpoint' in err
    code, err = run(str(tmp_path / 'missing.py'), ckpt, out)
    assert code == 1 and 'does not exist' in err
    assert not osp.exists(out)

    assert main([cfg_path, ckpt, out]) == 0
    code, err = run(cfg_path, out, str(tmp_path / 'again.pth'))
    assert code == 1 and 'already a deploy checkpoint' in err


def test_function_validates_arguments(tmp_path):
    cfg = Config.fromfile(write_config(tmp_path, R18_S4U1, [16, 32, 64, 128]))
    with pytest.raises(TypeError, match='mmengine Config'):
        convert_checkpoint_to_deploy(dict(cfg), 'x.pth', 'y.pth')
    with pytest.raises(ValueError, match='check_shape'):
        convert_checkpoint_to_deploy(cfg, 'x.pth', 'y.pth', check_shape=(8, 8))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        convert_checkpoint_to_deploy(cfg, str(tmp_path / 'x.pth'), str(tmp_path / 'y.pth'))
    notckpt = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], str(notckpt))
    with pytest.raises(CheckpointFormatError, match="expected a dict with 'state_dict'"):
        convert_checkpoint_to_deploy(copy.deepcopy(cfg), str(notckpt), str(tmp_path / 'y.pth'))


@pytest.mark.slow
def test_mmdet_test_tool_refuses_a_deploy_checkpoint_of_other_forms_and_ours_reads_them(tmp_path):
    """mmdet's own tools/test.py with ``model.backbone.deploy=True`` but without the checkpoint's ``deploy_forms``
    used to run on with the convolutions of the other form left random (issue 21, point 4)."""
    import mmdet

    from mmbasis.models.layers import deploy_form
    from tests.test_tools.tiny import DEMO_CONFIG, run, tiny_options

    mmdet_test = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')

    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.merge_from_dict(
        {
            'model.backbone.base_channels': 16,
            'model.backbone.shared_rank': 4,
            'model.neck.in_channels': [16, 32, 64, 128],
        }
    )
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


@pytest.mark.parametrize('mask, expected', [(0o022, 0o644), (0o077, 0o600)], ids=['022', '077'])
def test_cli_output_gets_the_umask_permissions(tmp_path, mask, expected):
    """Issue 21 point 7: a deploy checkpoint was created 0600 (mkstemp), unreadable to a serving process."""
    cfg_path = write_config(tmp_path, R18_S4U1, [16, 32, 64, 128])
    ckpt, out = str(tmp_path / 'ckpt.pth'), str(tmp_path / 'deploy.pth')
    make_training_checkpoint(cfg_path, ckpt)
    old = os.umask(mask)
    try:
        assert TOOL_MODULE.main([cfg_path, ckpt, out]) == 0
    finally:
        os.umask(old)
    assert oct(os.stat(out).st_mode & 0o777) == oct(expected)
