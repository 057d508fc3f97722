"""Decomposing plain ResNets into shared filter bases (mmbasis.decompose; its command: test_plain_to_shared.py).

Tiny widths (``base_channels=8``) and 32 x 32 inputs keep every decomposition well under a second or two.
The exactly representable cases build the plain network *from* a shared-basis network (or with one
convolution per stage up to scales) by an independent construction written here, then check that the
decomposition recovers its function.
"""

import math
import os.path as osp
from collections import OrderedDict
from typing import Dict, Tuple

import pytest
import torch
from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS
from torch import Tensor

import mmbasis  # noqa: F401  (registers the backbones)
from mmbasis.decompose import (
    PLAIN_LAYOUTS,
    calibration_batch,
    decompose_checkpoint,
    decompose_resnet,
    extract_plain_backbone,
    load_plain_checkpoint,
    target_backbone_cfg,
)
from mmbasis.models.archs import paper_backbone_cfg
from mmbasis.models.layers import BasisConv2d, FactorizedConv2d
from mmbasis.utils.checkpoint_io import CheckpointFormatError
from tests.helpers import randomize_bn, sha256
from tests.helpers.resnets import R18, layouts, plain_resnet

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def inputs(n: int = 2, seed: int = 1) -> Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def outputs(model: torch.nn.Module, x: Tensor) -> Tuple[Tensor, ...]:
    model.eval()
    return tuple(model(x))


def rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------------------ exact cases
@torch.no_grad()
def merge_into_plain(model) -> Dict[str, Tensor]:
    """State dict of a plain mmdet ResNet computing ``model`` (a SharedBasisResNet) in eval mode.

    A factorised conv ``coeff(basis_norm(conv(x, [U; B])))`` followed by the block's BN is one conv with
    weight ``coeff diag(s1) [U; B]`` (``s1 = gamma1 / sqrt(var1 + eps)``) plus the constant
    ``c = coeff t1`` (``t1 = beta1 - mean1 s1``, the same at every position, padding included), which the
    block's BN absorbs as ``running_mean - c``. A whole shared conv is its basis.
    """
    sd = model.state_dict()
    plain = OrderedDict(
        (k, v.clone())
        for k, v in sd.items()
        if not any(p in k for p in ('.basis.', '.basis_norm.', '.coeff.', 'shared_basis'))
    )
    for name, m in model.named_modules():
        if isinstance(m, FactorizedConv2d):
            basis = (
                torch.cat([m.basis.unique_basis, m.basis.shared_basis])
                if m.basis.unique_basis is not None
                else m.basis.shared_basis
            )
            bn = m.basis_norm
            s1 = bn.weight / (bn.running_var + bn.eps).sqrt()
            t1 = bn.bias - bn.running_mean * s1
            coeff = m.coeff.weight[:, :, 0, 0]
            plain[f'{name}.weight'] = torch.einsum('tr,rskl->tskl', coeff * s1, basis)
            block, k = name.rsplit('.conv', 1)
            plain[f'{block}.bn{k}.running_mean'] = plain[f'{block}.bn{k}.running_mean'] - coeff @ t1
        elif isinstance(m, BasisConv2d) and m.unique_basis is None and '.basis' not in name:
            plain[f'{name}.weight'] = m.shared_basis.clone()
    return plain


@pytest.mark.parametrize(
    'cfg',
    [
        dict(R18, basis_sharing='stage'),
        dict(type='SharedBasisResNet', depth=34, shared_rank=2, unique_rank=1, base_channels=8, basis_sharing='conv'),
    ],
    ids=['r18-stage', 'r34-conv-star'],
)
def test_exactly_representable_network_is_recovered(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    randomize_bn(model, seed=3)
    if cfg['basis_sharing'] == 'stage':  # a general (non-orthonormal) shared basis
        for p in model.shared_bases().values():
            p.data.normal_()
    plain = ResNet(cfg['depth'], base_channels=8)
    plain.load_state_dict(merge_into_plain(model), strict=True)
    x = inputs()
    ref = outputs(model, x)
    for a, b in zip(outputs(plain, x), ref):  # the merge itself is exact
        assert rel(a, b) < 1e-5

    state_dict, report = decompose_resnet(plain.state_dict(), cfg, x)
    new = MODELS.build(cfg)
    new.load_state_dict(state_dict, strict=True)
    # Reached: weight errors ~1e-7 and stage output errors ~1e-6, not 0: the plain weights are float32 products
    # (round-off ~1e-7 relative), the fit runs in float64 and its result is rounded to float32 again, and the
    # identity basis norms compute (z - mean) / std * std + mean in float32.
    assert report['overall']['weight_error'] < 1e-5
    assert max(st['output_error'] for st in report['stages']) < 1e-4
    for a, b in zip(outputs(new, x), ref):
        assert rel(a, b) < 1e-4
    assert report['orthogonality_loss'] < 1e-10  # orthonormal (and jointly orthogonal) shared bases


def plain_with_one_conv_per_stage(convs: Tuple[str, ...], seed: int = 0) -> ResNet:
    """A ResNet-50 whose repeated blocks use one conv per stage and position up to scales:
    ``W_j = diag(a_j) V diag(b_j)``, ``a_j`` of any sign, ``b_j > 0``."""
    plain = plain_resnet(50, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for stage in (plain.layer1, plain.layer2, plain.layer3, plain.layer4):
            for name in convs:
                v = torch.randn(getattr(stage[1], name).weight.shape, generator=g) * 0.1
                for blk in list(stage)[1:]:
                    a = (torch.rand(v.shape[0], generator=g) + 0.5) * torch.randn(v.shape[0], generator=g).sign()
                    b = torch.rand(v.shape[1], generator=g) * 1.5 + 0.5
                    getattr(blk, name).weight.copy_(a.view(-1, 1, 1, 1) * v * b.view(1, -1, 1, 1))
    return plain


@pytest.mark.parametrize('convs', [('conv2',), ('conv2', 'conv3')], ids=['shared', 'shared++'])
def test_whole_conv_sharing(convs):
    cfg = dict(type='SharedBasisResNet', depth=50, base_channels=8, shared_convs=convs, basis_sharing='conv')
    x = inputs()
    # general weights: runs, finite and honest (random convs of different blocks have nothing in common)
    _, report = decompose_resnet(plain_resnet(50).state_dict(), cfg, x)
    assert 0.3 < report['overall']['weight_error'] < 1.0
    assert all(math.isfinite(st['output_error']) for st in report['stages'])
    assert {la['kind'] for la in report['layers']} == {'whole'}

    # one conv per stage up to per-channel scales: exact (output scales -> the BN after the conv, input scales
    # -> the BN before it, through the ReLU). Reached ~1e-7 (weights), ~1e-6 (outputs): float32 round-off.
    plain = plain_with_one_conv_per_stage(convs)
    state_dict, report = decompose_resnet(plain.state_dict(), cfg, x)
    assert report['overall']['weight_error'] < 1e-5
    assert all(la['input_scales'] for la in report['layers'])
    new = MODELS.build(cfg)
    new.load_state_dict(state_dict, strict=True)
    raw = {}
    hooks = [
        net.get_submodule(la['name']).register_forward_hook(lambda m, i, o, k=(tag, la['name']): raw.__setitem__(k, o))
        for tag, net in (('new', new), ('plain', plain))
        for la in report['layers']
    ]
    for a, b in zip(outputs(new, x), outputs(plain, x)):
        assert rel(a, b) < 1e-4
    for h in hooks:
        h.remove()
    # The rewritten BNs' running statistics describe the new raw responses (which are the plain ones divided by
    # a per-channel factor), so train-mode BN and its running averages start consistent.
    for la in report['layers']:
        z_new, z_old = raw['new', la['name']], raw['plain', la['name']]
        factor = (z_old * z_new).sum((0, 2, 3)) / z_new.pow(2).sum((0, 2, 3))
        bn = la['name'].replace('.conv', '.bn')
        bn_new, bn_old = new.get_submodule(bn), plain.get_submodule(bn)
        torch.testing.assert_close(bn_new.running_mean * factor, bn_old.running_mean, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(bn_new.running_var * factor**2, bn_old.running_var, rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------------------------------ general weights
def test_error_decreases_with_rank():
    sd, x = plain_resnet(18).state_dict(), inputs()
    weight, output = [], []
    for s in (2, 4, 6):
        state_dict, report = decompose_resnet(sd, dict(R18, shared_rank=s), x)
        MODELS.build(dict(R18, shared_rank=s)).load_state_dict(state_dict, strict=True)
        weight.append(report['overall']['weight_error'])
        output.append(report['stages'][-1]['output_error'])
        for g in report['groups']:  # the kept candidate is the best measured one
            assert g['weight_error'] == pytest.approx(min(g['candidates'].values()))
    assert weight[0] > 0.3  # random filters are far from low-rank: a real, non-zero error
    assert weight[0] > weight[1] > weight[2]
    assert output[0] > output[1] > output[2]


def test_refinement_never_hurts_and_can_be_switched_off():
    sd, x = plain_resnet(18, seed=5).state_dict(), inputs()
    _, refined = decompose_resnet(sd, R18, x, als_iters=25)
    _, closed = decompose_resnet(sd, R18, x, als_iters=0)
    assert all(g['method'] in ('svd', 'subspace') for g in closed['groups'])
    assert all(g['method'].endswith('+als') for g in refined['groups'])
    for g in refined['groups']:
        assert g['weight_error'] <= min(g['candidates']['svd'], g['candidates']['subspace']) + 1e-12
    assert refined['overall']['weight_error'] < closed['overall']['weight_error']


def test_basis_norms_are_calibrated_identities():
    x = inputs(4)
    state_dict, _ = decompose_resnet(plain_resnet(18).state_dict(), R18, x)
    model = MODELS.build(R18)
    model.load_state_dict(state_dict, strict=True)
    seen = {}
    hooks = [
        m.basis_norm.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, (i[0], o)))
        for n, m in model.named_modules()
        if isinstance(m, FactorizedConv2d)
    ]
    outputs(model, x)
    for h in hooks:
        h.remove()
    assert len(seen) == 8
    for n, (z, out) in seen.items():
        bn = model.get_submodule(n).basis_norm
        assert rel(out, z) < 1e-5  # identity in eval mode
        torch.testing.assert_close(bn.running_mean, z.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, z.var((0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ layouts and errors
@pytest.mark.parametrize('layout', list(PLAIN_LAYOUTS))
@pytest.mark.parametrize('module_prefix', [False, True])
def test_layout_detection(tmp_path, layout, module_prefix):
    sd = plain_resnet(18).state_dict()
    full = layouts(sd)[layout]
    if module_prefix:
        full = OrderedDict((f'module.{k}', v) for k, v in full.items())
    got, found = extract_plain_backbone(full)
    assert found == layout
    assert list(got) == list(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    path = str(tmp_path / 'ckpt.pth')  # from a file: mmengine checkpoint (dict with state_dict) or plain state dict
    torch.save(dict(state_dict=full, meta=dict(epoch=1)) if layout.startswith('mm') else full, path)
    got, found = load_plain_checkpoint(path)
    assert found == layout and list(got) == list(sd)


def test_unknown_layouts_are_refused():
    with pytest.raises(CheckpointFormatError, match=r'no plain ResNet backbone found.*encoder\.weight.*torchvision'):
        extract_plain_backbone({'encoder.weight': torch.zeros(2, 2)})
    with pytest.raises(CheckpointFormatError, match=r"'backbone\.' keys are not a ResNet.*patch_embed"):
        extract_plain_backbone({'backbone.patch_embed.proj.weight': torch.zeros(2, 2), 'neck.w': torch.zeros(1)})
    with pytest.raises(CheckpointFormatError, match='non-empty state dict'):
        extract_plain_backbone({})


def test_checkpoints_that_do_not_fit_the_target():
    x = inputs(1)
    with pytest.raises(CheckpointFormatError, match=r'ResNet-18 \(BasicBlock.*needs ResNet-34'):
        decompose_resnet(plain_resnet(18).state_dict(), dict(R18, depth=34), x)
    with pytest.raises(CheckpointFormatError, match=r'ResNet-50 \(Bottleneck.*needs ResNet-18'):
        decompose_resnet(plain_resnet(50).state_dict(), R18, x)
    with pytest.raises(CheckpointFormatError, match=r'shape mismatches.*conv1\.weight \(8, 3, 7, 7\) vs \(16'):
        decompose_resnet(plain_resnet(18).state_dict(), dict(R18, base_channels=16), x)
    shared = MODELS.build(R18).state_dict()
    with pytest.raises(CheckpointFormatError, match='already a shared-basis checkpoint'):
        decompose_resnet(shared, R18, x)


def test_bad_targets():
    sd, x = plain_resnet(18).state_dict(), inputs(1)
    with pytest.raises(ValueError, match=r'larger than the layer width'):  # the backbone's own message reaches us
        decompose_resnet(sd, dict(R18, shared_rank=8), x)
    with pytest.raises(ValueError, match=r"type 'ResNet' is not allowed.*SharedBasisResNet"):
        decompose_resnet(sd, dict(type='ResNet', depth=18, base_channels=8), x)
    with pytest.raises(ValueError, match=r"arch='MobileNetV2-Shared' is not allowed.*ResNet34-S48U1\*"):
        target_backbone_cfg(arch='MobileNetV2-Shared')
    with pytest.raises(ValueError, match='exactly one'):
        target_backbone_cfg()
    with pytest.raises(ValueError, match='deploy=True is not allowed'):
        target_backbone_cfg(backbone_cfg=dict(R18, deploy=True))
    with pytest.raises(ValueError, match='als_iters=-1'):
        decompose_resnet(sd, R18, x, als_iters=-1)
    assert target_backbone_cfg(arch='ResNet34-S48U1*') == paper_backbone_cfg('ResNet34-S48U1*')
    assert 'init_cfg' not in target_backbone_cfg(
        backbone_cfg=dict(R18, init_cfg=dict(type='Pretrained', checkpoint='x.pth'))
    )


def test_checkpoint_api_refuses_bad_paths(tmp_path):
    src = str(tmp_path / 'plain.pth')
    torch.save(plain_resnet(18).state_dict(), src)
    digest = sha256(src)
    with pytest.raises(ValueError, match='is the source checkpoint'):
        decompose_checkpoint(src, src, backbone_cfg=R18, num_images=1, img_size=32)
    with pytest.raises(ValueError, match='is a directory'):
        decompose_checkpoint(src, str(tmp_path), backbone_cfg=R18, num_images=1, img_size=32)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        decompose_checkpoint(str(tmp_path / 'missing.pth'), str(tmp_path / 'out.pth'), backbone_cfg=R18)
    with pytest.raises(FileNotFoundError, match='no images'):
        decompose_checkpoint(src, str(tmp_path / 'out.pth'), backbone_cfg=R18, images=str(tmp_path / '..'))
    assert sha256(src) == digest and not osp.exists(tmp_path / 'out.pth')


def test_calibration_batch_from_images(tmp_path):
    import mmcv

    for i in range(3):
        mmcv.imwrite((torch.rand(20 + i, 30, 3) * 255).byte().numpy(), str(tmp_path / f'img{i}.png'))
    x, info = calibration_batch(str(tmp_path), num_images=2, img_size=32)
    assert x.shape == (2, 3, 32, 32) and info['kind'] == 'images' and info['num_images'] == 2
    assert -3 < float(x.mean()) < 3
    with pytest.raises(ValueError, match='img_size=8'):
        calibration_batch(img_size=8)
