# Faster R-CNN FPN on PASCAL VOC 07+12 (mmdet's pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py: 4 epochs of the 3x
# repeated dataset = 1x, VOC2007 test, VOC mAP) with a plain ResNet-34 starting from torchvision's ImageNet weights:
# the baseline of faster-rcnn_r34-s48u1star-in1k_fpn_1x_voc0712.py (only the backbone differs). mmdet's recipe for an
# ImageNet backbone: frozen_stages=1, norm_eval=True.
_base_ = './faster-rcnn_r50-in1k_fpn_1x_voc0712.py'

model = dict(
    backbone=dict(depth=34, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet34')),
    neck=dict(in_channels=[64, 128, 256, 512]),
)  # BasicBlock stages: 64, 128, 256, 512 channels
