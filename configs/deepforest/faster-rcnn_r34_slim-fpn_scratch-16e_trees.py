# faster-rcnn_r18_slim-fpn_scratch-16e_trees.py with a plain ResNet-34 from scratch: the baseline of the ResNet34-S48U1*
# and ResNet34-S16U1* tree configs (only the backbone differs, plus the regulariser).
_base_ = ['./faster-rcnn_r18_slim-fpn_scratch-16e_trees.py']

model = dict(backbone=dict(depth=34))
