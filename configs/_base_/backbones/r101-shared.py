# ResNet101-Shared (paper; official class ResNet101_SharedSingle): the 3x3 conv of the non-first bottlenecks of each
# stage is shared (stage 3: one tensor used by 22 blocks); 27,422,784 backbone parameters vs 42,500,160.
shared_backbone = dict(type='SharedBasisResNet', arch='ResNet101-Shared')
# ImageNet weights: tools/model_converters/netrl2_to_mmbasis.py SRC DST --arch 'ResNet101-Shared'
in1k_checkpoint = 'checkpoints/netrl2_resnet101-shared.pth'
