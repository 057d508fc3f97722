"""Official Net_RL2 checkpoints -> mmbasis backbones (mmbasis.models.netrl2; its command:
tests/test_tools/test_netrl2_to_mmbasis.py).

CI has no access to the official code: the tests build random official-format state dicts from the key facts in
``tests/data/netrl2_keys.json`` (tests/helpers/netrl2.py), convert them, load them strictly into our backbones and
compare the stage outputs with an independent functional forward that reads the official keys.

Opt-in: with ``NETRL2_ROOT=/path/to/Net_RL2`` the official classes themselves are built and compared.
"""

import importlib.util
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List

import pytest
import torch
import torch.nn.functional as F

import mmbasis  # noqa: F401
from mmbasis.models.archs import PAPER_MODELS
from mmbasis.models.netrl2 import (
    NETRL2_ARCHS,
    NetRL2ConversionError,
    convert_netrl2_state_dict,
    extract_netrl2_state_dict,
    guess_netrl2_arch,
)
from mmbasis.utils import CheckpointFormatError
from tests.helpers.netrl2 import OFFICIAL, build_ours, official_state_dict, reference_forward, rel_diff

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


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
    with pytest.raises(
        NetRL2ConversionError,
        match=r'shape mismatches \(official vs mmbasis\): shared_basis_1_1\.weight -> .*ResNet34-S32U1\*',
    ):
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
