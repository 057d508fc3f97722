# Faster R-CNN FPN 1x on COCO with the paper's ResNet34-S16U1* backbone (7.2 M backbone parameters vs 21.3 M). There
# is no official ImageNet checkpoint of this model: it starts from torchvision's ImageNet ResNet-34 decomposed into
# shared bases by tools/model_converters/plain_to_shared.py (see ../_base_/backbones/r34-s16u1star.py), with the
# orthogonality regulariser. Pair: faster-rcnn_r34-in1k_fpn_1x_coco.py (plain ResNet-34, the very ImageNet weights
# that were decomposed); the two configs differ only in the backbone (and the regulariser that acts on it).
_base_ = ['./faster-rcnn_r34-in1k_fpn_1x_coco.py', '../_base_/backbones/r34-s16u1star.py']

model = dict(backbone=dict(_base_.shared_backbone, init_cfg=dict(type='Pretrained', checkpoint=_base_.in1k_checkpoint)))
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
