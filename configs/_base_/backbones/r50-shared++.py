# ResNet50-Shared++ (paper; official class ResNet50_Shared): the 3x3 conv and the 1x1 expansion of the non-first
# bottlenecks of each stage are shared (two regulariser terms, 3x3 and 1x1); 16,213,056 backbone parameters vs
# 23,508,032 for ResNet-50.
shared_backbone = dict(type='SharedBasisResNet', arch='ResNet50-Shared++')
# ImageNet weights: tools/model_converters/netrl2_to_mmbasis.py SRC DST --arch 'ResNet50-Shared++'
in1k_checkpoint = 'checkpoints/netrl2_resnet50-shared++.pth'
