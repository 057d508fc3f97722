"""A ``Pretrained`` init_cfg that does not fit a shared-basis backbone stops the run instead of training on silently."""

import pytest
import torch
from mmdet.models.backbones import ResNet

from mmbasis.models import SharedBasisMobileNetV2, SharedBasisResNet

S48 = dict(depth=34, shared_rank=6, unique_rank=1, basis_sharing='conv', base_channels=8)


def _save(tmp_path, model, name, prefix=''):
    path = str(tmp_path / name)
    torch.save(dict(state_dict={prefix + k: v for k, v in model.state_dict().items()}, meta={}), path)
    return path


def _init(path, prefix=None, **cfg):
    pretrained = dict(type='Pretrained', checkpoint=path)
    if prefix:
        pretrained['prefix'] = prefix
    model = SharedBasisResNet(**cfg, init_cfg=pretrained)
    model.init_weights()
    return model


def test_compatible_checkpoint_loads_as_before(tmp_path):
    torch.manual_seed(0)
    source = SharedBasisResNet(**S48)
    path = _save(tmp_path, source, 'same.pth')
    model = _init(path, **S48)
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    # a detector checkpoint through prefix='backbone.' (how mmdet users point at a trained detector)
    det = _save(tmp_path, source, 'detector.pth', prefix='backbone.')
    model = _init(det, prefix='backbone.', **S48)
    assert torch.equal(model.layer3.shared_basis_conv1, source.layer3.shared_basis_conv1)


def test_plain_resnet_checkpoint_is_refused_with_the_numbers(tmp_path):
    plain = _save(tmp_path, ResNet(depth=34, base_channels=8), 'plain_r34.pth')
    with pytest.raises(ValueError) as e:
        _init(plain, **S48)
    msg = str(e.value)
    own = len(SharedBasisResNet(**S48).state_dict())
    # stem, first blocks, shortcuts and the output BNs of the shared blocks do fit: about half of the tensors
    assert f"'{plain}'" in msg and f'of its {own} tensors match' in msg and 'at least 90% are required' in msg
    assert 'Missing: layer1.shared_basis_conv1' in msg
    assert 'plain_to_shared.py' in msg  # what to do about it


@pytest.mark.parametrize('other', [dict(S48, shared_rank=3), dict(S48, depth=18)], ids=['other rank', 'other depth'])
def test_checkpoint_of_another_rank_or_depth_is_refused(tmp_path, other):
    path = _save(tmp_path, SharedBasisResNet(**other), 'other.pth')
    with pytest.raises(ValueError, match=r'does not fit SharedBasisResNet: only \d+ of its \d+ tensors match'):
        _init(path, **S48)


def test_mobilenet_checks_too(tmp_path):
    path = _save(tmp_path, SharedBasisMobileNetV2(shared_convs=()), 'plain_mbv2.pth')
    model = SharedBasisMobileNetV2(
        shared_convs=('expand_conv', 'linear_conv'), init_cfg=dict(type='Pretrained', checkpoint=path)
    )
    with pytest.raises(ValueError, match='shape mismatches'):
        model.init_weights()
