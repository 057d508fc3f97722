# Faster R-CNN FPN on COCO with a plain ResNet-34 trained from scratch (no ImageNet weights): the baseline of
# faster-rcnn_r34-s48u1star_fpn_scratch-6x_coco.py (only the backbone differs). Schedule as mmdet's
# scratch/faster-rcnn_r50-scratch_fpn_gn-all_6x_coco.py (73 epochs, LinearLR warm-up, steps at 65 and 71, no weight
# decay on norms), with SyncBN instead of GroupNorm in the backbone (the paper's models use BatchNorm): without
# ImageNet statistics, BN needs enough images per batch, so synchronise it across GPUs.
_base_ = './faster-rcnn_r34-in1k_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        frozen_stages=-1,  # from scratch: every layer trains
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,  # BN statistics must be learnt
        # The official code initialises every BN with gamma=1; mmdet's default zero_init_residual=True would zero
        # the last BN of every block (an identity start the paper's models do not use).
        zero_init_residual=False,
        init_cfg=None,
    )
)

max_epochs = 73
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[65, 71], gamma=0.1),
]
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.0))
default_hooks = dict(checkpoint=dict(max_keep_ckpts=3))  # as mmdet's scratch configs
