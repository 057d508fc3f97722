# SSD512 on COCO with the paper's ResNet34-S48U1* backbone (11.3 M backbone parameters vs 21.3 M) starting from the
# official ImageNet weights (converted with tools/model_converters/netrl2_to_mmbasis.py, see
# ../_base_/backbones/r34-s48u1star.py), with the orthogonality regulariser. Pair: ssd512_r34-in1k_8xb8-120e_coco.py
# (plain ResNet-34, torchvision ImageNet weights); the two configs differ only in the backbone (and the regulariser).
_base_ = ['./ssd512_r34-in1k_8xb8-120e_coco.py', '../_base_/backbones/r34-s48u1star.py']

model = dict(backbone=dict(_base_.shared_backbone, init_cfg=dict(type='Pretrained', checkpoint=_base_.in1k_checkpoint)))
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
