# ResNet34-S48U1* Faster R-CNN trained from scratch on COCO (no ImageNet weights needed): every stage and
# every BatchNorm trains, and the schedule is mmdet's scratch schedule (6x, as
# configs/scratch/faster-rcnn_r50-scratch_fpn_gn-all_6x_coco.py), with SyncBN across GPUs.
_base_ = './faster-rcnn_r34-s48u1star_fpn_1x_coco.py'

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(backbone=dict(frozen_stages=-1, norm_eval=False, norm_cfg=norm_cfg, init_cfg=None))

max_epochs = 73
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[65, 71], gamma=0.1)
]
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
