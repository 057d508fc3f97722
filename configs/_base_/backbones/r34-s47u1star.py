# ResNet34-S47U1* (hardware-aligned variant, ours, not the paper's, hence explicit arguments instead of an arch): the
# architecture of the paper's ResNet34-S48U1* with shared rank 47 instead of 48 (x1/x2/x4/x8) and unique rank 1, so
# that every basis has a total rank (shared + unique) that is a multiple of 16 (48, 96, 192, 384): CPU convolution
# kernels (oneDNN) work on blocks of 16 channels, and the paper's ranks (16k + 1) cost a whole extra block.
shared_backbone = dict(type='SharedBasisResNet', depth=34, shared_rank=47, unique_rank=1, basis_sharing='conv')
