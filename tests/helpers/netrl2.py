"""Official Net_RL2 state dicts for the converter tests, without the official code.

``tests/data/netrl2_keys.json`` holds the key names and shapes of ``net.state_dict()`` of every official model
(ssregibility/Net_RL2 @ 936a886, ``models/ilsvrc``) and which keys are copies of a shared conv registered on several
parents. From it :func:`official_state_dict` builds random official-format state dicts; :func:`reference_forward` is
an independent functional forward that reads the *official* keys (written from the official forward code's
structure, not from our backbones).
"""

import json
import os.path as osp
from collections import OrderedDict
from typing import List

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS

from mmbasis.models.archs import paper_backbone_cfg

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data', 'netrl2_keys.json')

with open(FIXTURE) as f:
    OFFICIAL = {k: v for k, v in json.load(f).items() if not k.startswith('_')}


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
