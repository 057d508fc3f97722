# Faster R-CNN + FPN, COCO 1x, with the paper's ResNet34-S48U1* backbone (shared rank 48, unique rank 1,
# two shared bases per stage; 11,273,968 backbone parameters vs 21,284,672 for ResNet-34) and the
# orthogonality regulariser (lambda = 10).
#
# ImageNet weights: convert an official Net_RL2 checkpoint once with
#   python tools/model_converters/netrl2_to_mmbasis.py ResNet34_DoubleShared_S48U1.pth \
#       checkpoints/netrl2_resnet34-s48u1star.pth --arch 'ResNet34-S48U1*'
# and train with mmdet's usual recipe for a pretrained backbone (frozen stem+stage 1, frozen BN statistics).
# Without ImageNet weights, train from scratch: faster-rcnn_r34-s48u1star_fpn_scratch_coco.py.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)

pretrained = 'checkpoints/netrl2_resnet34-s48u1star.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='SharedBasisResNet',
        depth=34,
        shared_rank=48,
        unique_rank=1,
        rank_multipliers=(1, 2, 4, 8),
        basis_sharing='conv',
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))

custom_hooks = [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]
