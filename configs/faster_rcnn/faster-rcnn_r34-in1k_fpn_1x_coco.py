# Faster R-CNN FPN 1x on COCO with a plain ResNet-34 starting from torchvision's ImageNet weights: the baseline of
# faster-rcnn_r34-s48u1star-in1k_fpn_1x_coco.py and faster-rcnn_r34-s16u1star-in1k_fpn_1x_coco.py (same detector,
# data and schedule; only the backbone differs). mmdet's recipe for an ImageNet backbone: stem + stage 1 frozen,
# BN statistics frozen (frozen_stages=1, norm_eval=True).
_base_ = './faster-rcnn_r50-in1k_fpn_1x_coco.py'

model = dict(
    backbone=dict(depth=34, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet34')),
    neck=dict(in_channels=[64, 128, 256, 512]),
)  # BasicBlock stages: 64, 128, 256, 512 channels
