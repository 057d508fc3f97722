# RetinaNet FPN on PASCAL VOC 07+12 with a plain ResNet-34 starting from torchvision's ImageNet weights: mmdet's
# pascal_voc/retinanet_r50_fpn_1x_voc0712.py (4 epochs of the 3x repeated dataset = 1x, VOC2007 test, VOC mAP; stage 1
# and BN statistics frozen) with ResNet-34 in place of ResNet-50, plus the mmbasis runtime. The baseline of
# retinanet_r34-s48u1star-in1k_fpn_1x_voc0712.py (only the backbone differs).
_base_ = ['mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py', '../_base_/mmbasis_imports.py']

model = dict(
    backbone=dict(depth=34, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet34')),
    neck=dict(in_channels=[64, 128, 256, 512]),
)  # BasicBlock stages: 64, 128, 256, 512 channels

# mmbasis runtime (the same in every config of the pair)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = [dict(type='FiniteLossHook')]
# exact --resume: training workers restart every epoch
train_dataloader = dict(persistent_workers=False)
