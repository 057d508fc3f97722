"""tools/model_converters/switch_to_deploy.py: trained detector checkpoint -> deploy checkpoint, from the command line
(the conversion itself: tests/test_deploy/test_conversion.py)."""

import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from torch.nn.modules.batchnorm import _BatchNorm

import mmbasis  # noqa: F401
from mmbasis.deploy import apply_deploy_meta, build_detector
from mmbasis.models.layers import BasisConv2d, FactorizedConv2d
from tests.helpers import load_tool, sha256
from tests.helpers.deploy import R18_S4U1, detector_outputs, make_training_checkpoint, max_rel_diff, write_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'switch_to_deploy.py')
TOOL_MODULE = load_tool('tools/model_converters/switch_to_deploy.py')


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
    cfg_test = Config.fromfile(cfg_path)
    apply_deploy_meta(cfg_test, out)  # what tools/test.py does with a deploy checkpoint
    assert cfg_test.model.backbone.deploy is True and cfg_test.model.backbone.deploy_forms == forms
    cfg_train = Config.fromfile(cfg_path)
    apply_deploy_meta(cfg_train, ckpt)  # a training checkpoint changes nothing
    assert 'deploy' not in cfg_train.model.backbone


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
