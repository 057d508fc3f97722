# Faster R-CNN FPN 1x on COCO with a plain ResNet-50 starting from torchvision's ImageNet weights: mmdet's
# faster-rcnn_r50_fpn_1x_coco.py unchanged, plus the mmbasis runtime. The baseline of
# faster-rcnn_r50-shared-in1k_fpn_1x_coco.py and faster-rcnn_r50-shared++-in1k_fpn_1x_coco.py (only the backbone
# differs). mmdet's recipe for an ImageNet backbone: frozen_stages=1, norm_eval=True.
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', '../_base_/mmbasis_imports.py']

# mmbasis runtime (the same in every config of the pair)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = [dict(type='FiniteLossHook')]
# exact --resume: training workers restart every epoch (persistent ones carry their random state across epochs,
# which no checkpoint can restore; the cost is the workers' start-up once per epoch)
train_dataloader = dict(persistent_workers=False)
