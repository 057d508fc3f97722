# SSD300 on COCO with a plain ResNet-34 (torchvision ImageNet weights) in place of SSD's VGG-16: the baseline of
# ssd300_r34-s48u1star-in1k_8xb8-120e_coco.py (only the backbone differs).
#
# Design (the same in every SSD-with-ResNet config of this zoo): mmdet's ssd/ssd300_coco.py unchanged - data
# pipeline, 120 epochs (24 epochs of the 5x repeated dataset), optimizer, anchors - with the VGG backbone replaced:
# * the ResNet gives out_indices=(1, 2, 3), strides 8/16/32: 38x38, 19x19 and 10x10 maps at 300 px, the sizes of
#   VGG's conv4_3, fc7 and first extra level, so SSD's anchor strides and sizes (8, 16, 32, 64, 100, 300) apply
#   unchanged;
# * mmdet's SSDNeck adds the three remaining levels from stage 4 (10 -> 5 -> 3 -> 1: strides 2, 1, 1; paddings 1, 0,
#   0) and no L2Norm (l2_norm_scale=None): ResNet features are batch-normalised, unlike VGG's conv4_3;
# * torchvision's normalisation (std 58.4/57.1/57.4; SSD's VGG was trained on inputs with std 1); the mean, and so
#   the Expand fill value of the pipeline, is the same;
# * mmdet's recipe for an ImageNet ResNet: stem + stage 1 frozen, BN statistics frozen (frozen_stages=1,
#   norm_eval=True);
# * FixedSSDHead = mmdet's SSDHead whose predict() works on mmdet 3.3.0 (mmdetection#11780).
_base_ = 'mmdet::ssd/ssd300_coco.py'

model = dict(
    data_preprocessor=dict(std=[58.395, 57.12, 57.375]),
    backbone=dict(
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
    ),
    neck=dict(
        in_channels=(128, 256, 512),
        out_channels=(128, 256, 512, 256, 256, 256),
        level_strides=(2, 1, 1),
        level_paddings=(1, 0, 0),
        l2_norm_scale=None,
    ),
    bbox_head=dict(type='FixedSSDHead', in_channels=(128, 256, 512, 256, 256, 256)),
)

# mmbasis runtime (the same in every config of the pair)
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = _base_.custom_hooks + [dict(type='FiniteLossHook')]
# exact --resume: training workers restart every epoch (persistent ones carry their random state across epochs,
# which no checkpoint can restore; the cost is the workers' start-up once per epoch)
train_dataloader = dict(persistent_workers=False)
