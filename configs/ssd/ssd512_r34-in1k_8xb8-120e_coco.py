# SSD512 on COCO with a plain ResNet-34 (torchvision ImageNet weights) in place of SSD's VGG-16: the baseline of
# ssd512_r34-s48u1star-in1k_8xb8-120e_coco.py (only the backbone differs). mmdet's ssd/ssd512_coco.py unchanged with
# the VGG backbone replaced as in every SSD config of this zoo (../_base_/models/ssd_resnet.py): the ResNet's stages
# 2-4 give 64x64, 32x32 and 16x16 maps at 512 px, SSDNeck adds 16 -> 8 -> 4 -> 2 -> 1, so SSD512's anchors (strides
# 8 ... 512) apply unchanged.
_base_ = ['mmdet::ssd/ssd512_coco.py', '../_base_/models/ssd_resnet.py']

model = _base_.ssd512_resnet34

# mmbasis runtime (the same in every config of the pair; exact --resume: training workers restart every epoch)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = _base_.custom_hooks + [dict(type='FiniteLossHook')]
train_dataloader = dict(persistent_workers=False)
