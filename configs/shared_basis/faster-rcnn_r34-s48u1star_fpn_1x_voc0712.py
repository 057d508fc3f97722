# Faster R-CNN + FPN on PASCAL VOC 07+12 (mmdet's recipe: 4 epochs of the 3x-repeated dataset, VOC07 test,
# 11-point mAP) with the ResNet34-S48U1* backbone and the orthogonality regulariser.
_base_ = 'mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py'
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)

pretrained = 'checkpoints/netrl2_resnet34-s48u1star.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='SharedBasisResNet',
        depth=34,
        shared_rank=48,
        unique_rank=1,
        basis_sharing='conv',
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))

custom_hooks = [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
