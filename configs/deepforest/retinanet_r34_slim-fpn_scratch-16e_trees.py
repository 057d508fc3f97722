# RetinaNet with a plain ResNet-34 trained from scratch on real aerial images (tree crowns, one class): the one-stage
# detector that learns here where SSD did not (docs/studies/real_images.md). The zoo's Pascal VOC config
# (../pascal_voc/retinanet_r34-in1k_fpn_1x_voc0712.py: mmdet's VOC RetinaNet with the mmbasis runtime) on the
# deepforest trees (../_base_/datasets/deepforest_trees.py: 2x upscaled tiles, 256-px crops), slimmed for CPU training
# like the Faster R-CNN tree configs: the same FPN (64 channels, P2 to P6, strides 4 to 64) and a head of 64 channels;
# anchors of 16 to 406 px (octave base 4, three scales per octave) for crowns of 16 to 216 px after the 2x upscale.
# Focal loss over every anchor instead of SSD's hard-negative mining, which picks the near-miss anchors of dense
# crowns. The baseline of retinanet_r34-s48u1star_slim-fpn_scratch-16e_trees.py (only the backbone differs, plus the
# regulariser).
_base_ = ['../pascal_voc/retinanet_r34-in1k_fpn_1x_voc0712.py', '../_base_/datasets/deepforest_trees.py']

model = dict(
    backbone=dict(
        frozen_stages=-1,  # from scratch: nothing to freeze
        norm_eval=False,  # BN statistics must be learnt
        zero_init_residual=False,  # the official initialisation (every BN gamma = 1), as in the shapes study
        init_cfg=None,  # no ImageNet weights can be had here
    ),
    neck=dict(out_channels=64, start_level=0, add_extra_convs=False, num_outs=5),
    bbox_head=dict(num_classes=1, in_channels=64, feat_channels=64, anchor_generator=dict(strides=[4, 8, 16, 32, 64])),
    test_cfg=dict(nms_pre=1000, max_per_img=100),  # up to about 50 crowns per tile
)
train_dataloader = dict(_delete_=True, **_base_.trees_train_dataloader)
val_dataloader = dict(_delete_=True, **_base_.trees_val_dataloader)
test_dataloader = dict(_delete_=True, **_base_.trees_test_dataloader)
val_evaluator = _base_.trees_evaluator
test_evaluator = _base_.trees_evaluator
custom_hooks = _base_.custom_hooks + [_base_.trees_ema_hook]

max_epochs = _base_.trees_max_epochs
train_cfg = _base_.trees_train_cfg
param_scheduler = _base_.trees_param_scheduler
optim_wrapper = _base_.trees_optim_wrapper
auto_scale_lr = _base_.trees_auto_scale_lr

# Reproducible: the same seed gives the same run on the same machine; the study varies randomness.seed.
randomness = dict(seed=0)
default_hooks = _base_.trees_default_hooks
log_processor = _base_.trees_log_processor
