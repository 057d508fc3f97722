# Faster R-CNN FPN 1x on COCO with a plain ResNet-101 starting from torchvision's ImageNet weights: mmdet's
# faster-rcnn_r101_fpn_1x_coco.py unchanged, plus the mmbasis runtime. The baseline of
# faster-rcnn_r101-shared-in1k_fpn_1x_coco.py (only the backbone differs). mmdet's recipe for an ImageNet backbone:
# frozen_stages=1, norm_eval=True.
# mmdet's faster-rcnn_r101_fpn_1x_coco.py is its r50 config with this backbone: so is this one, on ours.
_base_ = './faster-rcnn_r50-in1k_fpn_1x_coco.py'

model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
