# SSD with a plain ResNet-34 trained from scratch on real aerial images (tree crowns, one class): the zoo's Pascal VOC
# SSD (../pascal_voc/ssd300_r34-in1k_8xb8-240e_voc0712.py: mmdet's SSD300 VOC recipe with ResNet-34 stages 2-4 in
# place of VGG-16) on the deepforest trees (../_base_/datasets/deepforest_trees.py: 2x upscaled tiles, 256-px crops
# for training, whole 800-px tiles for testing). For small dense objects the head predicts from the ResNet's strides
# 8, 16, 32 and one extra level (stride 64; SSD300's further levels would be 1-3 pixels wide at 256 px and hold only
# objects larger than any crown), with anchors of 24 to 256 px, which keeps the anchors fitted to the feature maps at
# any input size; the extra level is batch-normalised (trained from scratch). The baseline of
# ssd_r34-s48u1star_scratch-16e_trees.py (only the backbone differs, plus the regulariser).
_base_ = ['../pascal_voc/ssd300_r34-in1k_8xb8-240e_voc0712.py', '../_base_/datasets/deepforest_trees.py']

model = dict(
    backbone=dict(frozen_stages=-1, norm_eval=False, zero_init_residual=False, init_cfg=None),
    neck=dict(
        in_channels=(128, 256, 512),
        out_channels=(128, 256, 512, 256),
        level_strides=(2,),
        level_paddings=(1,),
        norm_cfg=dict(type='BN'),
    ),
    bbox_head=dict(
        in_channels=(128, 256, 512, 256),
        num_classes=1,
        anchor_generator=dict(
            strides=[8, 16, 32, 64],
            ratios=[[2], [2], [2], [2]],
            min_sizes=[24, 48, 96, 160],
            max_sizes=[48, 96, 160, 256],
        ),
    ),
)
train_dataloader = dict(_delete_=True, **_base_.trees_train_dataloader)
val_dataloader = dict(_delete_=True, **_base_.trees_val_dataloader)
test_dataloader = dict(_delete_=True, **_base_.trees_test_dataloader)
val_evaluator = _base_.trees_evaluator
test_evaluator = _base_.trees_evaluator
custom_hooks = _base_.custom_hooks + [_base_.trees_ema_hook]

max_epochs = 16
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[12], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2),
)
auto_scale_lr = dict(enable=False, base_batch_size=4)

randomness = dict(seed=0)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='SafeCheckpointHook', interval=2, max_keep_ckpts=2),
)
log_processor = dict(type='ReadableLogProcessor', window_size=20)
