"""DDP over NCCL and SyncBN with the regulariser, on 2 GPUs, against one process on the whole batch.

The toy model (tests/toy.py: a shared-basis ResNet-18 whose task loss is a per-sample mean) trains 3 SGD steps on
a batch of 4, split in halves between 2 GPUs under mmengine's DDP wrapper with the regulariser hooked into its
forward. TF32 is off on both sides, so the comparison tolerance (rtol 1e-4) only has to absorb the different
summation order of a split batch and cuDNN's non-deterministic backward kernels.

* Frozen BatchNorm (``norm_eval=True``): the ranks differ only in their half of the batch, DDP averages the
  gradients, so DDP over NCCL equals one process on the whole batch (the gloo version of this test is in
  test_orthogonality_hook.py).
* ``norm_cfg=dict(type='SyncBN')`` with BatchNorm training: SyncBN normalises by the statistics of the whole
  batch, so it equals plain BN on the whole batch in one process; plain BN on each half does not (checked too,
  so that the comparison is known to see the difference).

The SyncBN layout on the CPU (every norm of the backbone, also inside the factorised convolutions, becomes a
``SyncBatchNorm`` and mmengine's ``revert_sync_batchnorm`` turns all of them back) is checked without a GPU.
"""

import contextlib
import copy
import os
import os.path as osp
import tempfile
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.optim import OptimWrapper

from mmbasis.engine import OrthogonalityRegularizerHook
from tests.helpers import free_port
from tests.helpers.toy import ToyDetector, toy_batch

STEPS, TOTAL_BATCH, LAMBDA = 3, 4, 10.0
TWO_GPUS = pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason=f'needs 2 CUDA GPUs; this machine has {torch.cuda.device_count()}'
)


@contextlib.contextmanager
def _no_tf32():
    """Full float32 matmuls and convolutions inside, the previous settings restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _model(sync_bn: bool, norm_eval: bool) -> ToyDetector:
    norm_cfg = dict(type='SyncBN' if sync_bn else 'BN', requires_grad=True)
    return ToyDetector(norm_eval=norm_eval, norm_cfg=norm_cfg, shared_rank=2, unique_rank=1)


def _train(model, batches, wrapper_model=None) -> list:
    """SGD steps through ``train_step``; the logged ``loss_orth`` of each."""
    run = wrapper_model or model
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    return [run.train_step(batch, wrapper)['loss_orth'].item() for batch in batches]


def _hook(model) -> None:
    OrthogonalityRegularizerHook(loss_weight=LAMBDA).before_train(SimpleNamespace(model=model))


def _worker(rank: int, world: int, port: int, init: dict, sync_bn: bool, norm_eval: bool, out: str) -> None:
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # a process of its own
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group('nccl', rank=rank, world_size=world)
    model = _model(sync_bn, norm_eval)
    model.load_state_dict(init)
    model.cuda().train()
    ddp = MMDistributedDataParallel(model, device_ids=[rank])
    _hook(ddp)
    half = TOTAL_BATCH // world
    batches = [
        dict(inputs=toy_batch(TOTAL_BATCH, seed=s)['inputs'][rank * half : (rank + 1) * half].cuda())
        for s in range(STEPS)
    ]
    logged = _train(model, batches, ddp)
    if rank == 0:
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        types = sorted({type(m).__name__ for m in model.modules() if 'BatchNorm' in type(m).__name__})
        torch.save(dict(state=state, loss_orth=torch.tensor(logged), norm_types=types), out)
    dist.barrier()
    dist.destroy_process_group()


def _single(init: dict, norm_eval: bool):
    """One process, plain BN, the whole batch on GPU 0."""
    model = _model(False, norm_eval)
    model.load_state_dict(init)
    model.cuda().train()
    _hook(model)
    with _no_tf32():
        logged = _train(model, [dict(inputs=toy_batch(TOTAL_BATCH, seed=s)['inputs'].cuda()) for s in range(STEPS)])
    return {k: v.cpu() for k, v in model.state_dict().items()}, logged


def _ddp(init: dict, sync_bn: bool, norm_eval: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'rank0.pth')
        mp.spawn(_worker, args=(2, int(free_port()), init, sync_bn, norm_eval, out), nprocs=2, join=True)
        return torch.load(out, weights_only=True)


def _init(norm_eval: bool) -> dict:
    torch.manual_seed(0)
    model = _model(False, norm_eval)
    with torch.no_grad():  # away from orthonormal: loss_orth well above rounding
        for p in model.backbone.shared_bases().values():
            p.mul_(1.2)
    return copy.deepcopy(model.state_dict())


def _mismatches(a: dict, b: dict) -> list:
    return [k for k in a if not torch.allclose(a[k].double(), b[k].double(), rtol=1e-4, atol=1e-6)]


def _one_process_and_two_gpus(norm_eval: bool, sync_bn: bool):
    """(initial state, one process's state and logged loss_orth, the DDP run's outputs) from one start; the two
    training states must agree."""
    init = _init(norm_eval=norm_eval)
    single, single_logged = _single(init, norm_eval=norm_eval)
    ddp = _ddp(init, sync_bn=sync_bn, norm_eval=norm_eval)
    assert not _mismatches(single, ddp['state'])
    return init, single, single_logged, ddp


@pytest.mark.gpu
@pytest.mark.slow
@TWO_GPUS
def test_ddp_over_nccl_with_the_regulariser_matches_one_process():
    init, single, single_logged, ddp = _one_process_and_two_gpus(norm_eval=True, sync_bn=False)
    assert ddp['loss_orth'].tolist() == pytest.approx(single_logged, rel=1e-5) and single_logged[0] > 0
    assert not torch.equal(single['backbone.layer2.shared_basis'], init['backbone.layer2.shared_basis'])


@pytest.mark.gpu
@pytest.mark.slow
@TWO_GPUS
def test_syncbn_on_two_gpus_matches_batchnorm_on_the_whole_batch():
    init, single, _, synced = _one_process_and_two_gpus(norm_eval=False, sync_bn=True)
    assert synced['norm_types'] == ['SyncBatchNorm']  # every norm of the backbone, factorised convs included
    # without SyncBN each GPU normalises its own half: the same comparison sees the difference
    unsynced = _ddp(init, sync_bn=False, norm_eval=False)
    assert unsynced['norm_types'] == ['BatchNorm2d']
    differ = _mismatches(single, unsynced['state'])
    assert any(k.endswith('running_var') for k in differ) and any(k.endswith('shared_basis') for k in differ)


def test_syncbn_reaches_every_norm_and_reverts_for_one_process():
    """``norm_cfg=dict(type='SyncBN')`` builds SyncBatchNorm everywhere, also between basis and coefficient
    convolutions; mmengine's ``revert_sync_batchnorm`` (what a non-distributed run does) makes them plain
    BatchNorms again with the same parameters, and the model then trains on the CPU."""
    from mmengine.model import revert_sync_batchnorm

    from mmbasis.models.layers import FactorizedConv2d

    model = _model(sync_bn=True, norm_eval=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    factorised = [m for m in model.modules() if isinstance(m, FactorizedConv2d)]
    assert factorised and any(isinstance(m, torch.nn.SyncBatchNorm) for f in factorised for m in f.modules())
    before = copy.deepcopy(model.state_dict())
    model = revert_sync_batchnorm(model)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    # mmengine's _BatchNormXd: a plain BatchNorm for any input rank
    assert sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()) == len(norms)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    _hook(model)
    logged = _train(model, [toy_batch(TOTAL_BATCH, seed=0)])
    assert logged[0] > 0
