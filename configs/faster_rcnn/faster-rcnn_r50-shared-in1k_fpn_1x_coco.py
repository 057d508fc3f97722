# Faster R-CNN FPN 1x on COCO with the paper's ResNet50-Shared backbone (the 3x3 conv of the non-first bottlenecks
# of a stage is one tensor; 18.5 M backbone parameters vs 23.5 M) starting from the official ImageNet weights
# (converted with tools/model_converters/netrl2_to_mmbasis.py, see ../_base_/backbones/r50-shared.py), with the
# orthogonality regulariser. Pair: faster-rcnn_r50-in1k_fpn_1x_coco.py (plain ResNet-50, torchvision ImageNet
# weights); the two configs differ only in the backbone (and the regulariser that acts on it).
_base_ = ['./faster-rcnn_r50-in1k_fpn_1x_coco.py', '../_base_/backbones/r50-shared.py']

model = dict(backbone=dict(_base_.shared_backbone, init_cfg=dict(type='Pretrained', checkpoint=_base_.in1k_checkpoint)))
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
