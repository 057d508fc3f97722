# SSDLite 320 on COCO with mmdet's MobileNetV2 trained from scratch: mmdet's
# ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py (600 epochs = 120 epochs of the 5x repeated dataset) with
# FixedSSDHead (= mmdet's SSDHead whose predict() works on mmdet 3.3.0, mmdetection#11780) and the mmbasis runtime.
# The baseline of ssdlite_mobilenetv2-shared_8xb24-scratch-600e_coco.py and
# ssdlite_mobilenetv2-shared++_8xb24-scratch-600e_coco.py (only the backbone differs).
_base_ = ['mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py', '../_base_/mmbasis_imports.py']

model = dict(bbox_head=dict(type='FixedSSDHead'))

# mmbasis runtime (the same in every config of the pair)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
log_processor = dict(type='ReadableLogProcessor')
custom_hooks = _base_.custom_hooks + [dict(type='FiniteLossHook')]
# exact --resume: training workers restart every epoch (persistent ones carry their random state across epochs,
# which no checkpoint can restore; the cost is the workers' start-up once per epoch)
train_dataloader = dict(persistent_workers=False)
