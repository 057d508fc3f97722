"""ONNX export of deploy-mode backbones and a single-stage detector network (tensor mode), run in onnxruntime against
PyTorch. The end-to-end export of whole detectors: test_end2end.py."""

import builtins

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import mmbasis  # noqa: F401
from mmbasis.deploy.onnx import (
    ExportError,
    TensorNetwork,
    export_onnx,
    max_relative_error,
    onnx_session,
    run_onnx,
    verify_onnx,
)
from mmbasis.models.archs import PAPER_MODEL_NAMES, paper_backbone_cfg
from mmbasis.utils.cli import read_config
from tests.helpers import load_tool, randomize_bn

tool = load_tool('tools/deployment/pytorch2onnx.py')
SSD = 'configs/ssd/ssd300_r34-s48u1star-in1k_8xb8-120e_coco.py'
# float32 graphs computed in another order (onnxruntime's kernels and fusions): errors of a few 1e-7
TOLERANCE = 1e-4


@pytest.mark.parametrize('name', PAPER_MODEL_NAMES)
def test_deploy_backbone_exports_and_matches_pytorch(name, tmp_path):
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    model = MODELS.build(paper_backbone_cfg(name))
    randomize_bn(model)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        training_form = TensorNetwork(model)(x)
    model.switch_to_deploy()
    path = export_onnx(model, x, str(tmp_path / 'backbone.onnx'))
    assert verify_onnx(path, model, x) < TOLERANCE
    # ... and equal to the training form it came from (deploy folding + export together)
    assert max_relative_error(run_onnx(onnx_session(path), x), training_form) < TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == ['backbone.onnx']  # no temporary file left


@pytest.mark.slow
def test_detector_from_a_training_checkpoint_exports_in_deploy_form(tmp_path, capsys):
    register_all_modules(init_default_scope=False)
    # a training-form checkpoint (what runs write)
    cfg = read_config(SSD, {'model.backbone.init_cfg': None})
    torch.manual_seed(0)
    train_model = MODELS.build(cfg.model)
    randomize_bn(train_model)
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1), state_dict=train_model.state_dict()), ckpt)
    out = tmp_path / 'ssd.onnx'
    argv = [SSD, str(out), '--checkpoint', str(ckpt), '--shape', '300', '300', '--mode', 'tensor']
    assert tool.main(argv + ['--cfg-options', 'model.backbone.init_cfg=None']) == 0
    printed = capsys.readouterr().out
    assert 'detector network (tensor mode)' in printed and 'max relative error' in printed
    # the exported graph computes the *training checkpoint's* network (folded), not the config's init
    x = torch.randn(1, 3, 300, 300)
    train_model.eval()
    outputs = run_onnx(onnx_session(str(out)), x)
    assert len(outputs) == 12  # SSD300: class scores and box deltas of 6 levels
    with torch.no_grad():
        assert max_relative_error(outputs, TensorNetwork(train_model)(x)) < TOLERANCE


def test_a_failed_export_leaves_an_existing_file_untouched(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError('cannot trace this')

    out = tmp_path / 'model.onnx'
    out.write_bytes(b'previous export')
    # one line naming the model and the root cause, not torch.export's pages
    with pytest.raises(
        ExportError, match="^torch's ONNX exporter cannot export Broken: RuntimeError: cannot trace this$"
    ):
        export_onnx(Broken(), torch.randn(1, 3, 8, 8), str(out))
    assert out.read_bytes() == b'previous export'
    assert [p.name for p in tmp_path.iterdir()] == ['model.onnx']


def test_missing_onnx_packages_give_the_install_hint(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_onnxscript(name, *args, **kwargs):
        if name == 'onnxscript':
            raise ImportError('No module named onnxscript')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', no_onnxscript)
    with pytest.raises(ImportError, match=r"needs the package 'onnxscript'.*requirements/deploy.txt"):
        export_onnx(torch.nn.Identity(), torch.randn(1, 3, 8, 8), str(tmp_path / 'x.onnx'))


def test_export_refuses_a_name_without_onnx_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"must end with .onnx, got '.*model.bin'"):
        export_onnx(torch.nn.Identity(), torch.randn(1, 3, 8, 8), str(tmp_path / 'model.bin'))


def test_sessions_of_the_benchmark_do_not_spin(tmp_path):
    """spin=False (the benchmark's interleaved sessions) turns off busy-waiting; the default leaves it on; the
    results are the same."""
    net = torch.nn.Conv2d(3, 4, 3).eval()
    x = torch.randn(1, 3, 16, 16)
    path = export_onnx(net, x, str(tmp_path / 'net.onnx'))
    quiet, default = onnx_session(path, 1, spin=False), onnx_session(path, 1)
    entry = 'session.intra_op.allow_spinning'
    assert quiet.get_session_options().get_session_config_entry(entry) == '0'
    with pytest.raises(RuntimeError, match='does not have configuration'):  # not set: onnxruntime's default, spin
        default.get_session_options().get_session_config_entry(entry)
    with torch.no_grad():
        expected = net(x).numpy()
    assert all(abs(run_onnx(s, x)[0] - expected).max() < TOLERANCE for s in (quiet, default))
