"""Small detectors around shared-basis backbones and their training checkpoints, for the deploy tests."""

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub

from mmbasis.deploy import build_detector

from . import randomize_bn

R18_S4U1 = dict(
    type='SharedBasisResNet',
    depth=18,
    base_channels=16,
    shared_rank=4,
    unique_rank=1,
    basis_sharing='conv',
    norm_eval=False,
    init_cfg=None,
)
MBV2_PP = dict(
    type='SharedBasisMobileNetV2',
    widen_factor=0.5,
    shared_convs=('expand_conv', 'linear_conv'),
    with_eca=True,
    out_indices=(1, 2, 4, 7),
    init_cfg=None,
)


def write_config(tmp_path, backbone: dict, in_channels, name='cfg.py') -> str:
    """A small RetinaNet config around ``backbone`` (inherits mmdet's model base)."""
    text = f"""_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py']
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)
default_scope = 'mmdet'
model = dict(
    backbone=dict(_delete_=True, **{backbone!r}),
    neck=dict(in_channels={list(in_channels)!r}, out_channels=32, start_level=1, num_outs=5),
    bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1))
"""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def make_training_checkpoint(cfg_path: str, path: str, seed: int = 0) -> torch.nn.Module:
    """A checkpoint as mmengine's CheckpointHook writes it (meta, state_dict, optimizer, message hub)."""
    torch.manual_seed(seed)
    model = build_detector(Config.fromfile(cfg_path), deploy=False)  # PyTorch default init + random BN below
    with torch.no_grad():
        randomize_bn(model, seed)
    hub = MessageHub.get_instance('test_switch_to_deploy')
    hub.update_scalar('train/loss', 1.5)  # -> a HistoryBuffer holding numpy arrays in the checkpoint
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    torch.save(
        dict(
            meta=dict(epoch=2, iter=40, dataset_meta=dict(classes=('a', 'b', 'c'))),
            state_dict=model.state_dict(),
            optimizer=optim.state_dict(),
            message_hub=hub.state_dict(),
            param_schedulers=[],
        ),
        path,
    )
    return model.eval()


def detector_outputs(model, x):
    with torch.no_grad():
        cls, reg = model(x, mode='tensor')
    return list(cls) + list(reg)


def max_rel_diff(a, b):
    return max(((u - v).abs().max() / v.abs().max()).item() for u, v in zip(a, b))
