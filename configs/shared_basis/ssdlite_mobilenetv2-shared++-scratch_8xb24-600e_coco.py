# SSDLite on COCO with the paper's MobileNetV2-Shared++ backbone (1x1 expansion and projection shared in
# stages 3-6; 1,697,888 backbone parameters vs 2,226,272), trained from scratch like mmdet's SSDLite
# MobileNetV2 recipe, with the orthogonality regulariser (expansion and projection pooled separately).
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
# mmbasis.models.dense_heads: FixedSSDHead = mmdet's SSDHead whose predict() works on mmdet 3.3.0 (its own
# fails in validation/testing with "'SSDHead' object has no attribute 'loss_cls'", mmdetection#11780)
custom_imports = dict(imports=['mmbasis', 'mmbasis.models.dense_heads'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='SharedBasisMobileNetV2',
        shared_convs=('expand_conv', 'linear_conv'),
        shared_stages=(2, 3, 4, 5),
        variant='official',
        out_indices=(4, 7),
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03)),
    bbox_head=dict(type='FixedSSDHead'))

custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    dict(type='OrthogonalityRegularizerHook', loss_weight=10.0),
]
