# ResNet50-Shared (paper; official class ResNet50_SharedSingle): the 3x3 conv of the non-first bottlenecks of each
# stage is one tensor of the stage; 18,457,664 backbone parameters vs 23,508,032 for ResNet-50.
shared_backbone = dict(type='SharedBasisResNet', arch='ResNet50-Shared')
# ImageNet weights: tools/model_converters/netrl2_to_mmbasis.py SRC DST --arch 'ResNet50-Shared'
in1k_checkpoint = 'checkpoints/netrl2_resnet50-shared.pth'
