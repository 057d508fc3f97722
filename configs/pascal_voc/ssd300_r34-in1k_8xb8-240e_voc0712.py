# SSD300 on PASCAL VOC 07+12 with a plain ResNet-34 (torchvision ImageNet weights) in place of SSD's VGG-16: the
# baseline of ssd300_r34-s48u1star-in1k_8xb8-240e_voc0712.py (only the backbone differs). mmdet's
# pascal_voc/ssd300_voc0712.py unchanged - data pipeline, schedule (24 epochs of the 10x repeated dataset = 240
# epochs; mmdet's comment there says 120), anchors (basesize_ratio_range 0.2-0.9), 20 classes - with the VGG backbone
# replaced as in ../ssd/ssd300_r34-in1k_8xb8-120e_coco.py (see its header): ResNet stages 2-4 (38x38, 19x19, 10x10 at
# 300 px) plus SSDNeck's three extra levels, no L2Norm, torchvision's normalisation, frozen stage 1 and BN statistics.
_base_ = 'mmdet::pascal_voc/ssd300_voc0712.py'

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
        out_channels=(128, 256, 512, 256, 256, 256),
        level_strides=(2, 1, 1),  # 10 -> 5 -> 3 -> 1
        level_paddings=(1, 0, 0),
        l2_norm_scale=None,
    ),  # batch-normalised features: no L2Norm
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
