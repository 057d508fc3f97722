# faster-rcnn_r18_slim-fpn_scratch-16e_trees.py with the shared-basis ResNet-18 S16U1 (the demo's backbone, from
# scratch) and the orthogonality regulariser (lambda = 10): the pair differs only in the backbone.
_base_ = ['./faster-rcnn_r18_slim-fpn_scratch-16e_trees.py', '../_base_/backbones/r18-s16u1.py']

model = dict(backbone=_base_.shared_backbone)
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
