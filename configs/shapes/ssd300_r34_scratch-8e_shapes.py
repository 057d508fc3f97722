# SSD300 with a plain ResNet-34 trained from scratch on the generated shapes: the trained plain twin of
# ssd300_r34-s48u1star_scratch-8e_shapes.py and ssd300_r34-s16u1star_scratch-8e_shapes.py (only the backbone differs,
# plus the regulariser), so that whole SSD300 detectors are timed end to end with a trained post-processing load
# (docs/speed.md). The model is the zoo's SSD300 with ResNet-34 (../_base_/models/ssd_resnet.py on mmdet's SSD300:
# anchors, assigner, NMS unchanged) with from-scratch settings; the 160-px shapes are scaled to 300x300 as SSD300's
# pipeline does; the schedule is the shapes Faster R-CNN's, at SSD's from-scratch learning rate (0.01, as the
# deepforest SSD configs).
_base_ = [
    'mmdet::_base_/models/ssd300.py',
    '../_base_/datasets/shapes_detection.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/models/ssd_resnet.py',
]

model = dict(
    _base_.ssd300_resnet34,
    backbone=dict(
        _base_.ssd300_resnet34.backbone,
        frozen_stages=-1,  # from scratch: nothing to freeze
        norm_eval=False,  # BN statistics must be learnt
        zero_init_residual=False,  # the official initialisation (gamma = 1 everywhere), as the shapes Faster R-CNNs
        init_cfg=None,
    ),
    neck=dict(_base_.ssd300_resnet34.neck, norm_cfg=dict(type='BN')),  # extra levels batch-normalised (from scratch)
    bbox_head=dict(_base_.ssd300_resnet34.bbox_head, num_classes=3),
)
_size = (300, 300)
_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=_size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=_size, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=_train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=_test_pipeline))
test_dataloader = val_dataloader
del _size, _train_pipeline, _test_pipeline  # helpers of this file only

max_epochs = 8
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[6], gamma=0.1),
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
custom_hooks = [dict(type='FiniteLossHook')]
