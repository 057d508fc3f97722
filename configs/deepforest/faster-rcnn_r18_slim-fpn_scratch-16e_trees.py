# Faster R-CNN (FPN) with a plain ResNet-18 trained from scratch on real aerial images (tree crowns, one class):
# the zoo's Pascal VOC config (../pascal_voc/faster-rcnn_r34-in1k_fpn_1x_voc0712.py: mmdet's VOC Faster R-CNN with the
# mmbasis runtime) on the deepforest trees (../_base_/datasets/deepforest_trees.py: 2x upscaled tiles, 256-px crops),
# with the neck and heads slimmed for CPU training as in the shapes study (FPN 64 channels, 128 sampled RoIs,
# 256-wide box head) and anchors for small dense objects; 16 epochs, the LR step after 12 (8 epochs left accuracy
# on the table: docs/studies/real_images.md). The baseline of faster-rcnn_r18-s16u1_slim-fpn_scratch-16e_trees.py
# (only the backbone differs, plus the regulariser).
_base_ = ['../pascal_voc/faster-rcnn_r34-in1k_fpn_1x_voc0712.py', '../_base_/datasets/deepforest_trees.py']

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        depth=18,
        frozen_stages=-1,  # from scratch: nothing to freeze
        norm_eval=False,  # BN statistics must be learnt
        zero_init_residual=False,  # the official initialisation (every BN gamma = 1), as in the shapes study
        init_cfg=None,  # no ImageNet weights can be had here
    ),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64, num_outs=5),
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        # crowns of 16 to 216 px after the 2x upscale (median about 80): anchors of 32 to 512 px
        anchor_generator=dict(scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=1),
    ),
    # up to about 50 crowns per tile: keep enough proposals and detections
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300), rcnn=dict(max_per_img=100)),
)
train_dataloader = dict(_delete_=True, **_base_.trees_train_dataloader)
val_dataloader = dict(_delete_=True, **_base_.trees_val_dataloader)
test_dataloader = dict(_delete_=True, **_base_.trees_test_dataloader)
val_evaluator = _base_.trees_evaluator
test_evaluator = _base_.trees_evaluator
custom_hooks = _base_.custom_hooks + [_base_.trees_ema_hook]

max_epochs = _base_.trees_max_epochs
train_cfg = _base_.trees_train_cfg
param_scheduler = _base_.trees_param_scheduler
optim_wrapper = _base_.trees_optim_wrapper
auto_scale_lr = _base_.trees_auto_scale_lr

# Reproducible: the same seed gives the same run on the same machine; the study varies randomness.seed.
randomness = dict(seed=0)
default_hooks = _base_.trees_default_hooks
log_processor = _base_.trees_log_processor
