# Faster R-CNN with a plain ResNet-18 trained from scratch on the generated shapes dataset: the baseline of the
# demo (faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py, which differs only in the backbone). Neck and heads
# are slimmed so that it trains in minutes on 2 CPU cores (FPN 64 channels, 128 sampled RoIs, 256-wide box head).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/shapes_detection.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)

num_classes = 3
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        depth=18,
        frozen_stages=-1,  # from scratch: nothing to freeze
        norm_eval=False,  # BN statistics must be learnt
        # The official code initialises every BN with gamma=1; mmdet's default zero_init_residual=True would zero
        # the last BN of every block (an identity start the paper's models do not use).
        zero_init_residual=False,
        init_cfg=None,
    ),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64, num_outs=5),
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        anchor_generator=dict(scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=num_classes),
    ),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)),
)

max_epochs = 8
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[6], gamma=0.1),
]
# lr 0.02 (batch 4): with the official initialisation (no zeroed residual BNs) the plain ResNet-18 collapsed at
# 0.04 (mAP 0.001 after 8 epochs, seed 0), while 0.02 reached 0.339 and 0.01 0.272 after 6 epochs.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2),
)
auto_scale_lr = dict(enable=False, base_batch_size=4)

# Reproducible: the same seed gives the same run on the same machine (see the README's demo section).
randomness = dict(seed=0)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='SafeCheckpointHook', interval=2, max_keep_ckpts=2),
)
log_processor = dict(type='ReadableLogProcessor', window_size=20)
custom_hooks = [dict(type='FiniteLossHook')]
