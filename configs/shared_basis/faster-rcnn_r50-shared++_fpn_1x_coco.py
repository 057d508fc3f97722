# Faster R-CNN + FPN, COCO 1x, with the paper's ResNet50-Shared++ backbone: the 3x3 conv and the 1x1
# expansion of the non-first bottlenecks of each stage are shared (16,213,056 backbone parameters vs
# 23,508,032 for ResNet-50), with the orthogonality regulariser (two pooled terms, 3x3 and 1x1; lambda 10).
# ImageNet weights: tools/model_converters/netrl2_to_mmbasis.py SRC DST --arch 'ResNet50-Shared++'.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)

pretrained = 'checkpoints/netrl2_resnet50-shared++.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='SharedBasisResNet',
        depth=50,
        shared_convs=('conv2', 'conv3'),
        basis_sharing='conv',
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

custom_hooks = [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
