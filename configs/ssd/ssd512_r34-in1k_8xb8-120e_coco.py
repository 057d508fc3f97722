# SSD512 on COCO with a plain ResNet-34 (torchvision ImageNet weights) in place of SSD's VGG-16: the baseline of
# ssd512_r34-s48u1star-in1k_8xb8-120e_coco.py (only the backbone differs). Design as ssd300_r34-in1k_8xb8-120e_coco.py,
# on mmdet's ssd/ssd512_coco.py: the ResNet's stages 2-4 give 64x64, 32x32 and 16x16 maps at 512 px (VGG's conv4_3,
# fc7 and first extra level), SSDNeck adds 16 -> 8 -> 4 -> 2 -> 1 (strides 2, 2, 2, 1; paddings 1; a last 4x4
# kernel), so SSD512's anchors (strides 8 ... 512) apply unchanged.
_base_ = 'mmdet::ssd/ssd512_coco.py'

model = dict(
    data_preprocessor=dict(std=[58.395, 57.12, 57.375]),  # torchvision's normalisation (VGG's std was 1)
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=34,
        num_stages=4,
        out_indices=(1, 2, 3),  # strides 8, 16, 32
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet34'),
    ),
    neck=dict(
        in_channels=(128, 256, 512),
        out_channels=(128, 256, 512, 256, 256, 256, 256),
        level_strides=(2, 2, 2, 1),
        level_paddings=(1, 1, 1, 1),
        last_kernel_size=4,
        l2_norm_scale=None,
    ),  # batch-normalised features: no L2Norm
    bbox_head=dict(type='FixedSSDHead', in_channels=(128, 256, 512, 256, 256, 256, 256)),
)

# mmbasis runtime (the same in every config of the pair)
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = _base_.custom_hooks + [dict(type='FiniteLossHook')]
# exact --resume: training workers restart every epoch (persistent ones carry their random state across epochs,
# which no checkpoint can restore; the cost is the workers' start-up once per epoch)
train_dataloader = dict(persistent_workers=False)
