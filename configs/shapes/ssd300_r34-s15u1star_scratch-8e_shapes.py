# ssd300_r34_scratch-8e_shapes.py with ResNet34-S15U1*, the hardware-aligned variant of the paper's ResNet34-S16U1*
# (ours, not the paper's; total ranks multiples of 16; stages 2-4 as SSD's first levels, from scratch) and the
# orthogonality regulariser (lambda = 10): the pair differs only in the backbone.
_base_ = ['./ssd300_r34_scratch-8e_shapes.py', '../_base_/backbones/r34-s15u1star.py']

model = dict(backbone=_base_.shared_backbone)  # keeps the plain config's out_indices (1, 2, 3) and scratch settings
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
