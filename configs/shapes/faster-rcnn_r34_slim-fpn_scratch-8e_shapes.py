# The demo's detector with a plain ResNet-34 from scratch: baseline of the ResNet34-S48U1* and S16U1* shapes configs.
_base_ = ['./faster-rcnn_r18_slim-fpn_scratch-8e_shapes.py']

model = dict(backbone=dict(depth=34))
