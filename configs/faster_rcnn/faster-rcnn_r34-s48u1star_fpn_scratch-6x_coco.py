# Faster R-CNN FPN on COCO with the paper's ResNet34-S48U1* backbone trained from scratch (no ImageNet weights; 73
# epochs, SyncBN, every layer trains) with the orthogonality regulariser. Pair: faster-rcnn_r34_fpn_scratch-6x_coco.py
# (plain ResNet-34 from scratch); the two configs differ only in the backbone (and the regulariser that acts on it).
_base_ = ['./faster-rcnn_r34_fpn_scratch-6x_coco.py', '../_base_/backbones/r34-s48u1star.py']

model = dict(backbone=_base_.shared_backbone)
custom_hooks = _base_.custom_hooks + [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
