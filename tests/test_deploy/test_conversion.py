"""Deploy conversion of a trained detector checkpoint (mmbasis.deploy.convert_checkpoint_to_deploy); the command
that runs it: tests/test_tools/test_switch_to_deploy.py."""

import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import mmbasis  # noqa: F401
from mmbasis.deploy import build_detector, convert_checkpoint_to_deploy
from mmbasis.utils import CheckpointFormatError
from tests.helpers.deploy import (
    MBV2_PP,
    R18_S4U1,
    detector_outputs,
    make_training_checkpoint,
    max_rel_diff,
    write_config,
)


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
