# SSDLite 320 on COCO with the paper's MobileNetV2-Shared++ backbone (the 1x1 expansion and the 1x1 projection of the
# non-first blocks of stages 3-6 are shared per stage) in mmdet's MobileNetV2 layout (variant='mmdet'), trained from
# scratch, with the orthogonality regulariser (expansion and projection bases are two terms). Pair:
# ssdlite_mobilenetv2_8xb24-scratch-600e_coco.py (mmdet's MobileNetV2 from scratch); the two configs differ only in
# the sharing of the backbone (and the regulariser that acts on it).
_base_ = ['./ssdlite_mobilenetv2_8xb24-scratch-600e_coco.py', '../_base_/backbones/mobilenetv2-shared++.py']

model = dict(backbone=_base_.shared_backbone)
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
