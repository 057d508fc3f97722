# retinanet_r34_slim-fpn_scratch-16e_trees.py with the paper's ResNet34-S48U1* backbone (from scratch) and the
# orthogonality regulariser (lambda = 10): the pair differs only in the backbone.
_base_ = ['./retinanet_r34_slim-fpn_scratch-16e_trees.py', '../_base_/backbones/r34-s48u1star.py']

model = dict(backbone=_base_.shared_backbone)
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
