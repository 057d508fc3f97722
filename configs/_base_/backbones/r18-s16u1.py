# ResNet-18 S16U1 (the demo's backbone; ours, no paper ImageNet model, hence explicit arguments instead of an arch):
# shared rank 16 and unique rank 1 at stage 1, x1/x2/x4/x8 over the stages (the default rank_multipliers), one basis
# per stage shared by both convolutions of every non-first block.
shared_backbone = dict(type='SharedBasisResNet', depth=18, shared_rank=16, unique_rank=1, basis_sharing='stage')
