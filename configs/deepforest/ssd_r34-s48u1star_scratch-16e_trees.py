# ssd_r34_scratch-16e_trees.py with the paper's ResNet34-S48U1* backbone (stages 2-4 as SSD's first levels, from
# scratch) and the orthogonality regulariser (lambda = 10): the pair differs only in the backbone.
_base_ = ['./ssd_r34_scratch-16e_trees.py', '../_base_/backbones/r34-s48u1star.py']

model = dict(backbone=_base_.shared_backbone)  # keeps the plain config's out_indices (1, 2, 3) and scratch settings
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
