# Faster R-CNN FPN on PASCAL VOC 07+12 with a plain ResNet-50 starting from torchvision's ImageNet weights: mmdet's
# pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py unchanged (4 epochs of the 3x repeated dataset = 1x, VOC2007 test,
# VOC mAP), plus the mmbasis runtime. The baseline of faster-rcnn_r50-shared-in1k_fpn_1x_voc0712.py (only the
# backbone differs).
_base_ = ['mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py', '../_base_/mmbasis_imports.py']

# mmbasis runtime (the same in every config of the pair)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = [dict(type='FiniteLossHook')]
# exact --resume: training workers restart every epoch (persistent ones carry their random state across epochs,
# which no checkpoint can restore; the cost is the workers' start-up once per epoch)
train_dataloader = dict(persistent_workers=False)
