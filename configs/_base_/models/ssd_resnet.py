# The ResNet that replaces SSD's VGG-16 in every SSD config of this zoo (variables, and custom_imports as
# ../mmbasis_imports.py: a config that inherits an mmdet SSD config and this file sets `model = _base_.ssd300_resnet34`
# or `_base_.ssd512_resnet34`).
#
# Design: mmdet's SSD config unchanged - data pipeline, schedule, optimizer, anchors - with the VGG backbone replaced:
# * the ResNet gives out_indices=(1, 2, 3), strides 8/16/32: at 300 px 38x38, 19x19 and 10x10 maps (at 512 px 64x64,
#   32x32, 16x16), the sizes of VGG's conv4_3, fc7 and first extra level, so SSD's anchor strides and sizes apply
#   unchanged;
# * mmdet's SSDNeck adds the remaining levels from stage 4 (SSD300: 10 -> 5 -> 3 -> 1, strides 2, 1, 1, paddings 1,
#   0, 0; SSD512: 16 -> 8 -> 4 -> 2 -> 1, strides 2, 2, 2, 1, paddings 1 and a last 4x4 kernel) and no L2Norm
#   (l2_norm_scale=None): ResNet features are batch-normalised, unlike VGG's conv4_3;
# * torchvision's normalisation (std 58.4/57.1/57.4; SSD's VGG was trained on inputs with std 1); the mean, and so
#   the Expand fill value of the pipeline, is the same;
# * mmdet's recipe for an ImageNet ResNet: stem + stage 1 frozen, BN statistics frozen (frozen_stages=1,
#   norm_eval=True);
# * FixedSSDHead = mmdet's SSDHead whose predict() works on mmdet 3.3.0 (mmdetection#11780).
_base_ = '../mmbasis_imports.py'

_resnet34 = dict(
    _delete_=True,
    type='ResNet',
    depth=34,
    num_stages=4,
    out_indices=(1, 2, 3),
    frozen_stages=1,
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True,
    style='pytorch',
    init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet34'),
)
_levels300 = (128, 256, 512, 256, 256, 256)
_levels512 = (128, 256, 512, 256, 256, 256, 256)
ssd300_resnet34 = dict(
    data_preprocessor=dict(std=[58.395, 57.12, 57.375]),
    backbone=_resnet34,
    neck=dict(
        in_channels=(128, 256, 512),
        out_channels=_levels300,
        level_strides=(2, 1, 1),
        level_paddings=(1, 0, 0),
        l2_norm_scale=None,
    ),
    bbox_head=dict(type='FixedSSDHead', in_channels=_levels300),
)
ssd512_resnet34 = dict(
    ssd300_resnet34,
    neck=dict(
        ssd300_resnet34['neck'], out_channels=_levels512, level_strides=(2, 2, 2, 1), level_paddings=(1, 1, 1, 1)
    ),
    bbox_head=dict(type='FixedSSDHead', in_channels=_levels512),
)
ssd512_resnet34['neck']['last_kernel_size'] = 4
del _resnet34, _levels300, _levels512  # helpers of this file only
