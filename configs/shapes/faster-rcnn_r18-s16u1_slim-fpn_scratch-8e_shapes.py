# The embedded default of `make demo`: faster-rcnn_r18_slim-fpn_scratch-8e_shapes.py with the shared-basis
# ResNet-18 S16U1 backbone (trained from scratch) and the orthogonality regulariser (lambda = 10).
_base_ = ['./faster-rcnn_r18_slim-fpn_scratch-8e_shapes.py', '../_base_/backbones/r18-s16u1.py']

model = dict(backbone=_base_.shared_backbone)
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
