# SSD300 on PASCAL VOC 07+12 with a plain ResNet-34 (torchvision ImageNet weights) in place of SSD's VGG-16: the
# baseline of ssd300_r34-s48u1star-in1k_8xb8-240e_voc0712.py (only the backbone differs). mmdet's
# pascal_voc/ssd300_voc0712.py unchanged - data pipeline, schedule (24 epochs of the 10x repeated dataset = 240
# epochs; mmdet's comment there says 120), anchors (basesize_ratio_range 0.2-0.9), 20 classes - with the VGG backbone
# replaced as in every SSD config of this zoo (../_base_/models/ssd_resnet.py).
_base_ = ['mmdet::pascal_voc/ssd300_voc0712.py', '../_base_/models/ssd_resnet.py']

model = _base_.ssd300_resnet34

# mmbasis runtime (the same in every config of the pair; exact --resume: training workers restart every epoch)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = _base_.custom_hooks + [dict(type='FiniteLossHook')]
train_dataloader = dict(persistent_workers=False)
