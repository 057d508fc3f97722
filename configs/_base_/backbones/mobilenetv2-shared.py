# MobileNetV2-Shared (paper): in stages 3-6 the 1x1 expansion of the non-first blocks is one tensor per stage.
# `variant='mmdet'` keeps mmdet's MobileNetV2 layout, so a detector pair with mmdet's MobileNetV2 differs only in
# the sharing (the official layout, variant='official', is for official ImageNet weights).
shared_backbone = dict(type='SharedBasisMobileNetV2', arch='MobileNetV2-Shared', variant='mmdet')
