# SSD300 on COCO with a plain ResNet-50 (torchvision ImageNet weights) in place of SSD's VGG-16: the baseline of
# ssd300_r50-shared-in1k_8xb8-120e_coco.py (only the backbone differs). ./ssd300_r34-in1k_8xb8-120e_coco.py with
# ResNet-50's stages 2-4 (channels 512, 1024, 2048; strides 8, 16, 32) and wider extra levels.
_base_ = './ssd300_r34-in1k_8xb8-120e_coco.py'

model = dict(
    backbone=dict(depth=50, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(in_channels=(512, 1024, 2048), out_channels=(512, 1024, 2048, 512, 256, 256)),
    bbox_head=dict(in_channels=(512, 1024, 2048, 512, 256, 256)),
)
