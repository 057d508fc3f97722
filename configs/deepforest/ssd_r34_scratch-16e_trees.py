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
    # Hard-negative mining keeps 30 negatives per positive instead of SSD300's 3: with 3, plain SSD ended 16 epochs at
    # VOC mAP 0.03-0.06 on 3 seeds; with 30 it learns (docs: studies/real_images, "SSD's mining ratio").
    train_cfg=dict(neg_pos_ratio=30),
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

max_epochs = _base_.trees_max_epochs
train_cfg = _base_.trees_train_cfg
param_scheduler = _base_.trees_param_scheduler
optim_wrapper = _base_.trees_optim_wrapper
auto_scale_lr = _base_.trees_auto_scale_lr

randomness = dict(seed=0)
default_hooks = _base_.trees_default_hooks
log_processor = _base_.trees_log_processor
