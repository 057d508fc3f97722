# ResNet34-S15U1* (hardware-aligned variant, ours, not the paper's): ResNet34-S47U1* (r34-s47u1star.py) at the ranks
# of the paper's ResNet34-S16U1*: shared rank 15 instead of 16, total ranks 16, 32, 64, 128 (multiples of 16).
_base_ = './r34-s47u1star.py'
shared_backbone = dict(shared_rank=15)
