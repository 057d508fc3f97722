# ResNet34-S48U1* (paper): shared rank 48 and unique rank 1 at stage 1 (x1/x2/x4/x8), two shared bases per stage
# (one per conv position, the `*`); 11,273,968 backbone parameters vs 21,284,672 for ResNet-34.
shared_backbone = dict(type='SharedBasisResNet', arch='ResNet34-S48U1*')
# ImageNet weights: the official checkpoint, converted once with
#   python tools/model_converters/netrl2_to_mmbasis.py ResNet34_DoubleShared_S48U1.pth \
#       checkpoints/netrl2_resnet34-s48u1star.pth --arch 'ResNet34-S48U1*'
in1k_checkpoint = 'checkpoints/netrl2_resnet34-s48u1star.pth'
