"""tools/model_converters/netrl2_to_mmbasis.py: official Net_RL2 checkpoint -> mmbasis backbone checkpoint, from the
command line (the conversion itself: tests/test_models/test_netrl2.py)."""

import argparse
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.runner import load_checkpoint

import mmbasis  # noqa: F401
from mmbasis.models.netrl2 import (
    convert_netrl2_state_dict,
    netrl2_checkpoint_meta,
)
from mmbasis.utils import save_atomic
from tests.helpers import load_tool, sha256
from tests.helpers.netrl2 import build_ours, official_state_dict, reference_forward, rel_diff

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'netrl2_to_mmbasis.py')
TOOL_MODULE = load_tool('tools/model_converters/netrl2_to_mmbasis.py')


def _run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_cli_converts_and_backbone_loads_through_pretrained_init_cfg(tmp_path):
    arch = 'MobileNetV2-Shared++'
    sd = official_state_dict(arch, seed=3, prefix='module.')
    src, dst = str(tmp_path / 'official.pth'), str(tmp_path / 'out' / 'mmbasis.pth')
    torch.save(
        {
            'net_state_dict': sd,
            'optimizer_state_dict': {'state': {}, 'param_groups': []},
            'acc': torch.tensor(71.8),
            'epoch': 297,
        },
        src,
    )
    before = sha256(src)
    r = _run(src, dst, '--arch', arch)
    assert r.returncode == 0, r.stderr
    assert "init_cfg=dict(type='Pretrained'" in r.stdout and 'SharedBasisMobileNetV2' in r.stdout
    assert sha256(src) == before
    assert not [f for f in os.listdir(osp.dirname(dst)) if f.endswith('.tmp')]

    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['arch'] == arch and ckpt['meta']['official_epoch'] == 297
    assert not any(k.startswith('backbone.') for k in ckpt['state_dict'])

    # the documented use: the backbone's own init_cfg, no prefix; every tensor arrives
    model = build_ours(arch, init_cfg=dict(type='Pretrained', checkpoint=dst))
    model.init_weights()
    loaded = model.state_dict()
    assert list(loaded) == list(ckpt['state_dict'])
    assert all(torch.equal(loaded[k], v) for k, v in ckpt['state_dict'].items())
    fresh = build_ours(arch)
    load_checkpoint(fresh, dst, strict=True)  # also strict through mmengine's loader
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = reference_forward(arch, {k[len('module.') :]: v for k, v in sd.items()}, x)
        assert rel_diff(model(x), ref) < 1e-5


def test_resnet_pretrained_init_cfg_is_not_overwritten_by_basis_init(tmp_path):
    """init_weights() re-initialises shared bases orthogonally; the Pretrained load must come after it."""
    arch = 'ResNet34-S16U1*'
    converted = convert_netrl2_state_dict(official_state_dict(arch, seed=6), arch)
    dst = str(tmp_path / 'r34.pth')
    save_atomic(dict(state_dict=converted, meta=netrl2_checkpoint_meta(arch)), dst)
    model = build_ours(arch, init_cfg=dict(type='Pretrained', checkpoint=dst))
    model.init_weights()
    loaded = model.state_dict()
    assert list(loaded) == list(converted)
    assert all(torch.equal(loaded[k], v) for k, v in converted.items())
    # the blocks use the loaded shared tensor (referenced, not copied)
    assert model.layer3[2].conv1.basis.shared_basis is model.layer3.shared_basis_conv1


def test_cli_bad_inputs(tmp_path, capsys):
    main = TOOL_MODULE.main  # in-process: same code path as the command line, without a new interpreter per case
    good = str(tmp_path / 'good.pth')
    torch.save({'net_state_dict': official_state_dict('ResNet34-S16U1')}, good)
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    pickled = str(tmp_path / 'pickled.pth')
    torch.save({'net_state_dict': official_state_dict('ResNet34-S16U1'), 'args': argparse.Namespace(lr=0.1)}, pickled)
    dst = str(tmp_path / 'dst.pth')

    def run(*args):
        code = main(list(args))
        return code, capsys.readouterr().err

    code, err = run(str(text), dst, '--arch', 'ResNet34-S16U1')
    assert code == 1 and 'is not a PyTorch checkpoint that loads with torch.load(weights_only=True)' in err
    code, err = run(pickled, dst, '--arch', 'ResNet34-S16U1')  # arbitrary pickled objects are never executed
    assert code == 1 and 'argparse.Namespace' in err
    code, err = run(good, dst, '--arch', 'ResNet34-S32U1')
    assert code == 1 and "It matches --arch 'ResNet34-S16U1'" in err
    code, err = run(good, good, '--arch', 'ResNet34-S16U1')
    assert code == 1 and 'source checkpoint' in err
    code, err = run(str(tmp_path / 'absent.pth'), dst, '--arch', 'ResNet34-S16U1')
    assert code == 1 and 'does not exist' in err
    with pytest.raises(SystemExit) as exc:
        main([good, dst, '--arch', 'ResNet34'])
    assert exc.value.code == 2 and 'ResNet34-S48U1*' in capsys.readouterr().err
    assert not osp.exists(dst)
    assert main([good, dst, '--arch', 'ResNet34-S16U1']) == 0 and osp.isfile(dst)
