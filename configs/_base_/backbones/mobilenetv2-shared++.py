# MobileNetV2-Shared++ (paper): in stages 3-6 the 1x1 expansion and the 1x1 projection of the non-first blocks are
# shared (two regulariser terms). `variant='mmdet'`: mmdet's MobileNetV2 layout (see mobilenetv2-shared.py).
shared_backbone = dict(type='SharedBasisMobileNetV2', arch='MobileNetV2-Shared++', variant='mmdet')
