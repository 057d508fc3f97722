# SSD300 on COCO with a plain ResNet-34 (torchvision ImageNet weights) in place of SSD's VGG-16: the baseline of
# ssd300_r34-s48u1star-in1k_8xb8-120e_coco.py (only the backbone differs). mmdet's ssd/ssd300_coco.py unchanged - data
# pipeline, 120 epochs (24 epochs of the 5x repeated dataset), optimizer, anchors - with the VGG backbone replaced as
# in every SSD config of this zoo (the design: ../_base_/models/ssd_resnet.py).
_base_ = ['mmdet::ssd/ssd300_coco.py', '../_base_/models/ssd_resnet.py']

model = _base_.ssd300_resnet34

# mmbasis runtime (the same in every config of the pair; exact --resume: training workers restart every epoch)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = _base_.custom_hooks + [dict(type='FiniteLossHook')]
train_dataloader = dict(persistent_workers=False)
