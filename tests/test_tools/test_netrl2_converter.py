"""Official Net_RL2 checkpoints -> mmbasis backbones (tools/model_converters/netrl2_to_mmbasis.py).

CI has no access to the official code. ``tests/data/netrl2_keys.json`` holds the facts needed instead: the
key names and shapes of ``net.state_dict()`` of every official model (ssregibility/Net_RL2 @ 936a886,
``models/ilsvrc``), and which keys are copies of a shared conv registered on several parents. From it the
tests build random official-format state dicts, convert them, load them strictly into our backbones and
compare the stage outputs with an independent functional forward that reads the *official* keys
(``_reference_*`` below, written from the official forward code's structure, not from our backbones).

Opt-in: with ``NETRL2_ROOT=/path/to/Net_RL2`` the official classes themselves are built and compared.
"""

import argparse
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
from collections import OrderedDict
from typing import Dict, List

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.runner import load_checkpoint

import mmbasis  # noqa: F401
from mmbasis.paper_models import PAPER_MODELS, paper_backbone_cfg
from mmbasis.utils import CheckpointFormatError, save_atomic
from tests.helpers import load_tool, sha256

TOOL_MODULE = load_tool('tools/model_converters/netrl2_to_mmbasis.py')
NETRL2_ARCHS = TOOL_MODULE.NETRL2_ARCHS
NetRL2ConversionError = TOOL_MODULE.NetRL2ConversionError
convert_netrl2_state_dict = TOOL_MODULE.convert_netrl2_state_dict
extract_netrl2_state_dict = TOOL_MODULE.extract_netrl2_state_dict
guess_netrl2_arch = TOOL_MODULE.guess_netrl2_arch
netrl2_checkpoint_meta = TOOL_MODULE.netrl2_checkpoint_meta

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'netrl2_to_mmbasis.py')
FIXTURE = osp.join(ROOT, 'tests', 'data', 'netrl2_keys.json')

with open(FIXTURE) as f:
    OFFICIAL = {k: v for k, v in json.load(f).items() if not k.startswith('_')}


# ------------------------------------------------------------------------------------------ official-format data
def official_state_dict(arch: str, seed: int = 0, prefix: str = '') -> 'OrderedDict[str, torch.Tensor]':
    """A random state dict in the official format of ``arch`` (aliases share one tensor, random BN stats)."""
    g = torch.Generator().manual_seed(seed)
    entry = OFFICIAL[arch]
    sd = OrderedDict()
    for key, shape in entry['keys']:
        if key in entry['aliases']:
            sd[prefix + key] = sd[prefix + entry['aliases'][key]]
        elif key.endswith('num_batches_tracked'):
            sd[prefix + key] = torch.tensor(int(torch.randint(1, 1000, (1,), generator=g)))
        elif key.endswith('running_var'):
            sd[prefix + key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1:  # BN weight/bias, running_mean, conv/linear bias
            lo = 0.5 if key.endswith('.weight') else -0.5
            sd[prefix + key] = torch.rand(shape, generator=g) + lo
        else:  # conv / linear weights, fan-in scaled so activations stay O(1)
            fan_in = int(torch.tensor(shape[1:]).prod())
            sd[prefix + key] = torch.randn(shape, generator=g) / fan_in**0.5
    return sd


def _bn(x, sd, p):
    return F.batch_norm(
        x, sd[p + 'running_mean'], sd[p + 'running_var'], sd[p + 'weight'], sd[p + 'bias'], False, 0.0, 1e-5
    )


def _conv(x, w, stride=1, bias=None, groups=1):
    return F.conv2d(x, w, bias, stride, w.shape[-1] // 2, 1, groups)


def _blocks(sd, stage: str) -> List[int]:
    return sorted({int(k.split('.')[1]) for k in sd if k.startswith(stage + '.')})


def _reference_resnet(sd, x) -> List[torch.Tensor]:
    """Official ResNet forward from official keys: stage outputs layer1..layer4."""
    x = F.max_pool2d(F.relu(_bn(_conv(x, sd['conv1.weight'], 2), sd, 'bn1.')), 3, 2, 1)
    outs = []
    for i in range(1, 5):
        for j in _blocks(sd, f'layer{i}'):
            p = f'layer{i}.{j}.'
            stride = 2 if i > 1 and j == 0 else 1
            if p + 'basis_conv1.weight' in sd:  # factorised basic block (single- or double-shared)
                out = x
                for n in (1, 2):
                    shared = (
                        sd[p + 'shared_basis.weight']
                        if p + 'shared_basis.weight' in sd
                        else sd[p + f'shared_basis_{n}.weight']
                    )
                    z = torch.cat((_conv(out, sd[p + f'basis_conv{n}.weight']), _conv(out, shared)), dim=1)
                    z = _conv(_bn(z, sd, p + f'basis_bn{n}.'), sd[p + f'coeff_conv{n}.weight'])
                    out = _bn(z, sd, p + f'bn{n}.')
                    if n == 1:
                        out = F.relu(out)
            elif p + 'conv2.weight' in sd and p + 'conv3.weight' not in sd:  # plain basic block
                out = F.relu(_bn(_conv(x, sd[p + 'conv1.weight'], stride), sd, p + 'bn1.'))
                out = _bn(_conv(out, sd[p + 'conv2.weight']), sd, p + 'bn2.')
            else:  # bottleneck: 3x3 is conv2 or the stage's shared conv; 1x1 expansion conv3 or shared_basis_2
                w2 = sd.get(p + 'conv2.weight', sd.get(p + 'shared_basis.weight', sd.get(p + 'shared_basis_1.weight')))
                w3 = sd.get(p + 'conv3.weight', sd.get(p + 'shared_basis_2.weight'))
                out = F.relu(_bn(_conv(x, sd[p + 'conv1.weight']), sd, p + 'bn1.'))
                out = F.relu(_bn(_conv(out, w2, stride), sd, p + 'bn2.'))
                out = _bn(_conv(out, w3), sd, p + 'bn3.')
            sc = (
                _bn(_conv(x, sd[p + 'shortcut.0.weight'], stride), sd, p + 'shortcut.1.')
                if p + 'shortcut.0.weight' in sd
                else x
            )
            x = F.relu(out + sc)
        outs.append(x)
    return outs


def _reference_mbv2_block(sd, p, x, stride):
    w1 = sd.get(p + 'conv1.weight', sd.get(p + 'shared_basis1.weight'))
    w3 = sd.get(p + 'conv3.weight', sd.get(p + 'shared_basis2.weight'))
    out = F.relu(_bn(_conv(x, w1), sd, p + 'bn1.'))
    dw = sd[p + 'conv2.weight']
    out = F.relu(_bn(_conv(out, dw, stride, groups=dw.shape[0]), sd, p + 'bn2.'))
    out = _bn(_conv(out, w3), sd, p + 'bn3.')
    if p + 'chan_attention.conv.weight' in sd:  # ECA: sigmoid(conv1d over pooled channels) gates channels
        w = sd[p + 'chan_attention.conv.weight']
        y = F.conv1d(out.mean((2, 3)).unsqueeze(1), w, padding=(w.shape[-1] - 1) // 2)
        out = out * torch.sigmoid(y).squeeze(1)[:, :, None, None]
    return x + out if stride == 1 and x.shape[1] == out.shape[1] else out


def _reference_mobilenet(sd, x) -> List[torch.Tensor]:
    """Official MobileNetV2 forward from official keys: outputs of stage1..stage7 and conv1 (1280)."""
    x = F.relu6(_bn(_conv(x, sd['pre.0.weight'], 2, sd['pre.0.bias']), sd, 'pre.1.'))
    outs = []
    for i, stride in zip(range(1, 8), (1, 2, 2, 2, 1, 2, 1)):
        if i in (1, 7):
            x = _reference_mbv2_block(sd, f'stage{i}.', x, stride)
        else:
            for j in _blocks(sd, f'stage{i}'):
                x = _reference_mbv2_block(sd, f'stage{i}.{j}.', x, stride if j == 0 else 1)
        outs.append(x)
    outs.append(F.relu6(_bn(_conv(x, sd['conv1.0.weight'], 1, sd['conv1.0.bias']), sd, 'conv1.1.')))
    return outs


def reference_forward(arch: str, sd, x) -> List[torch.Tensor]:
    return _reference_mobilenet(sd, x) if arch.startswith('MobileNet') else _reference_resnet(sd, x)


def build_ours(arch: str, **kwargs):
    cfg = paper_backbone_cfg(arch)
    cfg['out_indices'] = tuple(range(8)) if arch.startswith('MobileNet') else (0, 1, 2, 3)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def rel_diff(ours, ref) -> float:
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, ref))


# ------------------------------------------------------------------------------------------ fixture facts
def test_fixture_covers_every_arch_and_matches_digest_counts():
    assert set(OFFICIAL) == set(NETRL2_ARCHS)
    for arch, entry in OFFICIAL.items():
        params = sum(
            torch.Size(s).numel()
            for k, s in entry['keys']
            if k not in entry['aliases'] and not k.endswith(('running_mean', 'running_var', 'tracked'))
        )
        assert params == entry['params'] == PAPER_MODELS[arch].full_params, arch


# ------------------------------------------------------------------------------------------ conversion
@pytest.mark.parametrize('arch', list(NETRL2_ARCHS))
def test_every_arch_converts_and_loads_strictly(arch):
    sd = official_state_dict(arch, prefix='module.')
    out = convert_netrl2_state_dict(sd, arch)
    assert all(not k.startswith(('module.', 'backbone.', 'fc.', 'classifier.')) for k in out)
    with torch.device('meta'):
        model = build_ours(arch)
    missing, unexpected = model.load_state_dict(out, strict=True, assign=True)
    assert not missing and not unexpected
    # every shared tensor once; its value is the official stage-level conv weight
    official_shared = {k for k, _ in OFFICIAL[arch]['keys'] if k.startswith('shared_basis_')}
    ours_shared = [k for k in out if '.shared_basis' in k]
    assert len(ours_shared) == len(official_shared)
    for k in official_shared:
        assert any(out[o] is sd['module.' + k] for o in ours_shared), k
    # parameter count of the converted backbone = official count minus the classifier
    n_fc = sum(torch.Size(s).numel() for k, s in OFFICIAL[arch]['keys'] if k.startswith(('fc.', 'classifier.')))
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL[arch]['params'] - n_fc


@pytest.mark.parametrize(
    'arch',
    [
        'ResNet34-S16U1',
        'ResNet34-S16U1*',
        'ResNet50-Shared',
        'ResNet50-Shared++',
        'MobileNetV2-Shared',
        'MobileNetV2-Shared++',
        'MobileNetV2-Shared++-ECA',
    ],
)
def test_converted_outputs_equal_official_reference(arch):
    sd = official_state_dict(arch, seed=1)
    model = build_ours(arch)
    model.load_state_dict(convert_netrl2_state_dict(sd, arch), strict=True)
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model(x)
        ref = reference_forward(arch, sd, x)
    assert len(ours) == len(ref) == (8 if arch.startswith('MobileNet') else 4)
    assert [o.shape for o in ours] == [r.shape for r in ref]
    assert rel_diff(ours, ref) < 1e-5


def test_reference_is_sensitive_to_the_shared_basis():
    """The comparison above can fail: corrupting one shared basis changes the reference outputs."""
    arch = 'ResNet34-S16U1*'
    sd = official_state_dict(arch, seed=1)
    x = torch.randn(1, 3, 64, 64)
    ref = reference_forward(arch, sd, x)
    sd2 = OrderedDict(sd)
    sd2['shared_basis_2_1.weight'] = sd['shared_basis_2_1.weight'] * 1.1
    for k in [k for k, v in OFFICIAL[arch]['aliases'].items() if v == 'shared_basis_2_1.weight']:
        sd2[k] = sd2['shared_basis_2_1.weight']
    ref2 = reference_forward(arch, sd2, x)
    assert torch.equal(ref[0], ref2[0]) and rel_diff(ref2[1:], ref[1:]) > 1e-3


# ------------------------------------------------------------------------------------------ bad inputs
def test_wrong_arch_names_the_matching_one():
    sd = official_state_dict('ResNet34-S32U1*')
    with pytest.raises(NetRL2ConversionError, match=r'shape mismatches: shared_basis_1_1\.weight .*ResNet34-S32U1\*'):
        convert_netrl2_state_dict(sd, 'ResNet34-S48U1*')
    with pytest.raises(NetRL2ConversionError, match=r'unexpected official keys: .*shared_basis_1_1\.weight'):
        convert_netrl2_state_dict(sd, 'ResNet34-S32U1')
    eca = official_state_dict('MobileNetV2-Shared++-ECA')
    with pytest.raises(NetRL2ConversionError, match=r'chan_attention.*MobileNetV2-Shared\+\+-ECA'):
        convert_netrl2_state_dict(eca, 'MobileNetV2-Shared++')
    assert guess_netrl2_arch(eca) == ['MobileNetV2-Shared++-ECA']


def test_missing_and_unknown_keys_are_named():
    sd = official_state_dict('ResNet34-S16U1')
    del sd['layer3.2.basis_bn1.running_var']
    with pytest.raises(NetRL2ConversionError, match=r'missing .*layer3\.2\.conv1\.basis_norm\.running_var'):
        convert_netrl2_state_dict(sd, 'ResNet34-S16U1')
    sd = official_state_dict('ResNet34-S16U1')
    sd['layer1.1.extra.weight'] = torch.zeros(1)
    with pytest.raises(NetRL2ConversionError, match=r'unexpected official keys: layer1\.1\.extra\.weight'):
        convert_netrl2_state_dict(sd, 'ResNet34-S16U1')
    with pytest.raises(ValueError, match='unknown arch .*known archs'):
        convert_netrl2_state_dict(sd, 'ResNet34')


def test_inconsistent_shared_copies_are_refused():
    sd = official_state_dict('ResNet50-Shared')
    sd['layer3.2.shared_basis.weight'] = sd['layer3.2.shared_basis.weight'] + 1
    with pytest.raises(NetRL2ConversionError, match=r'layer3\.2\.shared_basis\.weight.*values differ'):
        convert_netrl2_state_dict(sd, 'ResNet50-Shared')


def test_extract_accepts_official_and_plain_and_refuses_others():
    sd = official_state_dict('MobileNetV2-Shared')
    got, info = extract_netrl2_state_dict(
        {'net_state_dict': sd, 'acc': torch.tensor(72.4), 'epoch': 299, 'optimizer_state_dict': {}}
    )
    assert list(got) == list(sd) and info == {'epoch': 299, 'top1_acc': pytest.approx(72.4)}
    assert list(extract_netrl2_state_dict(sd)[0]) == list(sd)
    with pytest.raises(CheckpointFormatError, match='already converted'):
        extract_netrl2_state_dict({'state_dict': sd, 'meta': {}})
    with pytest.raises(CheckpointFormatError, match="'net_state_dict'.*found a dict with keys 'model'"):
        extract_netrl2_state_dict({'model': sd})
    with pytest.raises(CheckpointFormatError, match='found a list'):
        extract_netrl2_state_dict([1, 2])


# ------------------------------------------------------------------------------------------ command line
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


# ------------------------------------------------------------------------------------------ opt-in: official code
def _official_module(root: str, name: str):
    path = osp.join(root, 'models', 'ilsvrc', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_netrl2_official_{name}', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _build_official(root: str, arch: str):
    res, mbv2 = _official_module(root, 'resnet'), _official_module(root, 'mobilenetv2')
    ctor = NETRL2_ARCHS[arch].split('(')[0].split()[0]
    if arch.startswith('ResNet34'):
        rank = int(arch.split('-S')[1].split('U', maxsplit=1)[0])
        return getattr(res, ctor)(rank, 1)
    if arch == 'MobileNetV2-Shared++':  # the Shared++ blocks before ECA was added (class kept in the file)
        mbv2.BlockSharedDoubleAttention = mbv2.BlockSharedDouble
    return getattr(res if arch.startswith('ResNet') else mbv2, ctor)()


def _official_stage_outputs(net, arch: str, x) -> List[torch.Tensor]:
    if arch.startswith('ResNet'):
        x = net.maxpool(F.relu(net.bn1(net.conv1(x))))
        stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    else:
        x = net.pre(x)
        stages = [getattr(net, f'stage{i}') for i in range(1, 8)] + [net.conv1]
    outs = []
    for s in stages:
        x = s(x)
        outs.append(x)
    return outs


@pytest.mark.slow
def test_against_official_code():
    """Opt-in (NETRL2_ROOT=<checkout of ssregibility/Net_RL2>): official models vs converted backbones."""
    root = os.environ.get('NETRL2_ROOT')
    if not root:
        pytest.skip(
            'NETRL2_ROOT is not set: point it at a checkout of github.com/ssregibility/Net_RL2 to compare '
            'converted backbones with the official models'
        )
    if not osp.isfile(osp.join(root, 'models', 'ilsvrc', 'resnet.py')):
        pytest.fail(f'NETRL2_ROOT={root!r} has no models/ilsvrc/resnet.py')
    results: Dict[str, float] = {}
    for arch in NETRL2_ARCHS:
        torch.manual_seed(0)
        net = _build_official(root, arch).eval()
        # the fixture's facts are the official model's
        assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == OFFICIAL[arch]['keys'], arch
        sd = official_state_dict(arch, seed=4)  # random BN statistics too
        net.load_state_dict(sd)
        model = build_ours(arch)
        model.load_state_dict(
            convert_netrl2_state_dict({'module.' + k: v for k, v in net.state_dict().items()}, arch), strict=True
        )
        model.eval()
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            ours, ref = model(x), _official_stage_outputs(net, arch, x)
        results[arch] = max((a - b).abs().max().item() for a, b in zip(ours, ref))
        assert rel_diff(ours, ref) < 1e-5, arch
        del net, model
    print('\nmax |ours - official| over stage outputs (64x64 input):')
    for arch, d in results.items():
        print(f'  {arch:26s} {d:.3g}')
