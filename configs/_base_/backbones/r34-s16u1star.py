# ResNet34-S16U1* (paper notation; no official ImageNet checkpoint): shared rank 16 and unique rank 1 at stage 1
# (x1/x2/x4/x8), two shared bases per stage; 7,225,584 backbone parameters vs 21,284,672 for ResNet-34.
shared_backbone = dict(type='SharedBasisResNet', arch='ResNet34-S16U1*')
# ImageNet weights: torchvision's ResNet-34 decomposed into shared bases once with
#   python tools/model_converters/plain_to_shared.py resnet34-b627a593.pth \
#       checkpoints/resnet34-in1k_to_r34-s16u1star.pth --arch 'ResNet34-S16U1*'
in1k_checkpoint = 'checkpoints/resnet34-in1k_to_r34-s16u1star.pth'
