"""tools/model_converters/plain_to_shared.py: a plain ResNet checkpoint decomposed into a shared-basis backbone
checkpoint from the command line (the decomposition itself: tests/test_decompose/)."""

import json
import os.path as osp
from collections import OrderedDict

import pytest
import torch
from mmdet.registry import MODELS

import mmbasis  # noqa: F401  (registers the backbones)
from mmbasis.decompose import format_report
from tests.helpers import load_tool, sha256
from tests.helpers.resnets import R18, layouts, plain_resnet

tool = load_tool('tools/model_converters/plain_to_shared.py')


def test_tool_end_to_end(tmp_path, capsys):
    sd = plain_resnet(18).state_dict()
    src, dst = str(tmp_path / 'detector.pth'), str(tmp_path / 'out' / 'shared.pth')
    torch.save(dict(state_dict=layouts(sd)['mmdet-detector'], meta=dict(epoch=12)), src)
    digest = sha256(src)
    images = tmp_path / 'images'
    images.mkdir()
    import mmcv

    for i in range(2):
        mmcv.imwrite((torch.rand(40, 50, 3) * 255).byte().numpy(), str(images / f'{i}.jpg'))

    assert (
        tool.main(
            [
                src,
                dst,
                '--backbone-config',
                json.dumps(R18),
                '--images',
                str(images),
                '--img-size',
                '32',
                '--num-images',
                '2',
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert 'layer4.1.conv2' in printed and 'overall: weight error' in printed
    assert "init_cfg=dict(type='Pretrained', checkpoint=" in printed
    assert sha256(src) == digest

    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    meta = ckpt['meta']
    assert meta['source'] == 'detector.pth' and meta['source_layout'] == 'mmdet-detector'
    assert meta['backbone_cfg'] == R18 and meta['calibration']['kind'] == 'images'
    assert 0 < meta['report']['overall']['weight_error'] < 1 and len(meta['report']['layers']) == 8
    assert format_report(meta['report']).splitlines()[0].startswith('layer')
    MODELS.build(meta['backbone_cfg']).load_state_dict(ckpt['state_dict'], strict=True)
    # as the backbone's own init_cfg (mmengine's Pretrained initialiser, keys relative to the backbone)
    model = MODELS.build(dict(R18, init_cfg=dict(type='Pretrained', checkpoint=dst)))
    model.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt['state_dict'][k]), k

    # a .py config file with model.backbone, torchvision layout with module. prefixes, random calibration
    cfg_file = tmp_path / 'target.py'
    cfg_file.write_text(f'model = dict(backbone={R18!r})\n')
    tv = str(tmp_path / 'tv.pth')
    torch.save(OrderedDict((f'module.{k}', v) for k, v in layouts(sd)['torchvision'].items()), tv)
    assert (
        tool.main(
            [
                tv,
                str(tmp_path / 'tv_shared.pth'),
                '--backbone-config',
                str(cfg_file),
                '--img-size',
                '32',
                '--num-images',
                '1',
                '--als-iters',
                '0',
            ]
        )
        == 0
    )
    meta = torch.load(str(tmp_path / 'tv_shared.pth'), weights_only=True)['meta']
    assert meta['source_layout'] == 'torchvision' and meta['calibration']['kind'] == 'random normal'


@pytest.mark.parametrize('case', ['same', 'missing', 'arch', 'depth', 'rank', 'json'])
def test_tool_errors(tmp_path, capsys, case):
    src, dst = str(tmp_path / 'plain.pth'), str(tmp_path / 'out.pth')
    torch.save(plain_resnet(18).state_dict(), src)
    digest = sha256(src)
    cfg = json.dumps(R18)
    argv, message = {
        'same': ([src, src, '--backbone-config', cfg], 'is the source checkpoint'),
        'missing': ([str(tmp_path / 'nope.pth'), dst, '--backbone-config', cfg], 'nope.pth'),
        'arch': ([src, dst, '--arch', 'MobileNetV2-Shared'], "arch='MobileNetV2-Shared' is not allowed"),
        'depth': ([src, dst, '--backbone-config', json.dumps(dict(R18, depth=34))], 'needs ResNet-34'),
        'rank': ([src, dst, '--backbone-config', json.dumps(dict(R18, shared_rank=8))], 'larger than the layer'),
        'json': ([src, dst, '--backbone-config', '{depth: 18'], 'neither a file nor a JSON dict'),
    }[case]
    assert tool.main(argv + ['--img-size', '32', '--num-images', '1']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err
    assert sha256(src) == digest and not osp.exists(dst)
