# SSD300 on COCO with a plain ResNet-50 (torchvision ImageNet weights) in place of SSD's VGG-16: the baseline of
# ssd300_r50-shared-in1k_8xb8-120e_coco.py (only the backbone differs). Design as ssd300_r34-in1k_8xb8-120e_coco.py
# (mmdet's ssd300_coco.py with the ResNet's stages 2-4, strides 8/16/32, plus SSDNeck's three extra levels), with
# ResNet-50's channels: 512, 1024, 2048.
_base_ = 'mmdet::ssd/ssd300_coco.py'

model = dict(
    data_preprocessor=dict(std=[58.395, 57.12, 57.375]),  # torchvision's normalisation (VGG's std was 1)
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),  # strides 8, 16, 32: 38x38, 19x19, 10x10 at 300 px
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'),
    ),
    neck=dict(
        in_channels=(512, 1024, 2048),
        out_channels=(512, 1024, 2048, 512, 256, 256),
        level_strides=(2, 1, 1),  # 10 -> 5 -> 3 -> 1
        level_paddings=(1, 0, 0),
        l2_norm_scale=None,
    ),  # batch-normalised features: no L2Norm
    bbox_head=dict(type='FixedSSDHead', in_channels=(512, 1024, 2048, 512, 256, 256)),
)

# mmbasis runtime (the same in every config of the pair)
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = _base_.custom_hooks + [dict(type='FiniteLossHook')]
# exact --resume: training workers restart every epoch (persistent ones carry their random state across epochs,
# which no checkpoint can restore; the cost is the workers' start-up once per epoch)
train_dataloader = dict(persistent_workers=False)
