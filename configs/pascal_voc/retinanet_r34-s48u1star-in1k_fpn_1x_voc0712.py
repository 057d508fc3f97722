# RetinaNet FPN on PASCAL VOC 07+12 (mmdet's 1x VOC recipe) with the paper's ResNet34-S48U1* backbone (11.3 M
# backbone parameters vs 21.3 M) starting from the official ImageNet weights (converted with
# tools/model_converters/netrl2_to_mmbasis.py, see ../_base_/backbones/r34-s48u1star.py), with the orthogonality
# regulariser. Pair: retinanet_r34-in1k_fpn_1x_voc0712.py (plain ResNet-34, torchvision ImageNet weights); the two
# configs differ only in the backbone (and the regulariser that acts on it).
_base_ = ['./retinanet_r34-in1k_fpn_1x_voc0712.py', '../_base_/backbones/r34-s48u1star.py']

model = dict(backbone=dict(_base_.shared_backbone, init_cfg=dict(type='Pretrained', checkpoint=_base_.in1k_checkpoint)))
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
