# faster-rcnn_r34_slim-fpn_scratch-8e_shapes.py with ResNet34-S15U1*, the hardware-aligned variant of the paper's
# ResNet34-S16U1* (ours, not the paper's; total ranks multiples of 16), from scratch, with the orthogonality
# regulariser (lambda = 10): the pair differs only in the backbone.
_base_ = ['./faster-rcnn_r34_slim-fpn_scratch-8e_shapes.py', '../_base_/backbones/r34-s15u1star.py']

model = dict(backbone=_base_.shared_backbone)
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
