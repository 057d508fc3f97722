import copy
import os
import os.path as osp
import socket
import tempfile
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.optim import OptimWrapper

from mmbasis.engine import OrthogonalityRegularizerHook
from mmbasis.models import orthogonality_loss
from tests.toy import ToyDetector, toy_batch

LAMBDA = 10.


def _attach(model, **kwargs):
    hook = OrthogonalityRegularizerHook(loss_weight=LAMBDA, **kwargs)
    hook.before_train(SimpleNamespace(model=model))
    return hook


def _grads(model, batch):
    model.zero_grad()
    losses = model(**batch, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, {k: float(v) for k, v in log_vars.items()}


def test_gradient_is_task_plus_lambda_orth():
    torch.manual_seed(0)
    model = ToyDetector(shared_rank=3, basis_sharing='conv')
    with torch.no_grad():  # move the bases away from orthonormal so the term has a real gradient
        for p in model.backbone.shared_bases().values():
            p.mul_(1.3).add_(0.05)
    batch = toy_batch(2)
    task, _ = _grads(model, batch)
    model.zero_grad()
    reg, _ = orthogonality_loss(model.backbone.basis_groups())
    reg.backward()
    orth = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    hook = _attach(model)
    total, log_vars = _grads(model, batch)
    assert 'loss_orth' in log_vars and 'orth_max_err' in log_vars
    assert log_vars['loss_orth'] == pytest.approx(LAMBDA * reg.item(), rel=1e-5)
    # orth_max_err is logged, not summed into the loss
    assert log_vars['loss'] == pytest.approx(log_vars['loss_task'] + log_vars['loss_orth'], rel=1e-5)
    for name, g in total.items():
        expected = task.get(name, 0) + LAMBDA * orth.get(name, torch.zeros_like(g))
        assert torch.allclose(g, expected, rtol=1e-4, atol=1e-7), name
    assert any(name in orth for name in total)  # the bases did get a regulariser gradient
    hook.after_train(None)
    _, log_vars = _grads(model, batch)
    assert 'loss_orth' not in log_vars  # cleaned up after training


def test_only_in_loss_mode():
    model = ToyDetector()
    _attach(model)
    out = model(**toy_batch(2), mode='tensor')
    assert isinstance(out, tuple)


def _one_update(accumulative_counts: int):
    torch.manual_seed(0)
    model = ToyDetector(shared_rank=3)
    with torch.no_grad():
        for p in model.backbone.shared_bases().values():
            p.mul_(1.5)
    _attach(model)
    before = {n: p.detach().clone() for n, p in model.backbone.shared_bases().items()}
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), accumulative_counts=accumulative_counts)
    wrapper.initialize_count_status(model, 0, accumulative_counts)
    for _ in range(accumulative_counts):  # identical micro-batches: the task gradient is the same too
        model.train_step(toy_batch(2), wrapper)
    return {n: before[n] - p.detach() for n, p in model.backbone.shared_bases().items()}


def test_gradient_accumulation_keeps_the_weight_per_update():
    plain = _one_update(1)
    accumulated = _one_update(3)
    assert any(d.abs().max() > 1e-4 for d in plain.values())
    for n in plain:
        assert torch.allclose(plain[n], accumulated[n], rtol=1e-4, atol=1e-5), n


def test_errors_without_shared_bases():
    model = ToyDetector(shared_convs=())
    with pytest.raises(ValueError, match='has no shared filter bases'):
        _attach(model)
    model = ToyDetector()
    model.backbone.switch_to_deploy()
    with pytest.raises(ValueError, match='deploy mode'):
        _attach(model)
    with pytest.raises(ValueError, match='backbone'):
        OrthogonalityRegularizerHook().before_train(SimpleNamespace(model=torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match='loss_weight=-1'):
        OrthogonalityRegularizerHook(loss_weight=-1)
    with pytest.raises(ValueError, match="pooling='x'"):
        OrthogonalityRegularizerHook(pooling='x')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


STEPS, TOTAL_BATCH = 3, 4


def _train(model, batches, wrapper_model=None):
    run = wrapper_model or model
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    for batch in batches:
        run.train_step(batch, wrapper)


def _ddp_worker(rank: int, world: int, port: int, init_state: dict, out_file: str):
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = ToyDetector(norm_eval=True)
    model.load_state_dict(init_state)
    model.train()
    ddp = MMDistributedDataParallel(model)
    OrthogonalityRegularizerHook(loss_weight=LAMBDA).before_train(SimpleNamespace(model=ddp))
    per_rank = TOTAL_BATCH // world
    batches = [dict(inputs=toy_batch(TOTAL_BATCH, seed=s)['inputs'][rank * per_rank:(rank + 1) * per_rank])
               for s in range(STEPS)]
    _train(model, batches, ddp)
    if rank == 0:
        torch.save(model.state_dict(), out_file)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_matches_single_process():
    """BatchNorms are frozen (norm_eval=True: running statistics, identical on every rank), so the only
    difference between the runs is how the batch is split; gradients are averaged by DDP."""
    torch.manual_seed(0)
    model = ToyDetector(norm_eval=True)
    with torch.no_grad():
        for p in model.backbone.shared_bases().values():
            p.mul_(1.2)
    init = copy.deepcopy(model.state_dict())
    single = ToyDetector(norm_eval=True)
    single.load_state_dict(init)
    single.train()
    _attach(single)
    _train(single, [toy_batch(TOTAL_BATCH, seed=s) for s in range(STEPS)])
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'rank0.pth')
        mp.spawn(_ddp_worker, args=(2, _free_port(), init, out), nprocs=2, join=True)
        ddp_state = torch.load(out, weights_only=True)
    moved = 0
    for k, v in single.state_dict().items():
        assert torch.allclose(v.float(), ddp_state[k].float(), rtol=1e-4, atol=1e-6), k
        moved += int(not torch.equal(v, init[k]))
    assert moved > 0
    assert not torch.equal(single.backbone.layer2.shared_basis, init['backbone.layer2.shared_basis'])


@pytest.mark.gpu
def test_amp_optim_wrapper_on_gpu():
    """Under AmpOptimWrapper (fp16 autocast + loss scaler) loss_orth stays float32 and matches fp32."""
    from mmengine.optim import AmpOptimWrapper
    torch.manual_seed(0)
    model = ToyDetector(shared_rank=3).cuda()
    with torch.no_grad():
        for p in model.backbone.shared_bases().values():
            p.mul_(1.3)
    expected, _ = orthogonality_loss(model.backbone.basis_groups())
    _attach(model)
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.01), loss_scale='dynamic')
    with wrapper.optim_context(model):
        losses = model(**{k: v.cuda() for k, v in toy_batch(2).items()}, mode='loss')
    assert losses['loss_orth'].dtype == torch.float32
    assert losses['loss_orth'].item() == pytest.approx(LAMBDA * expected.item(), rel=1e-5)
    loss, _ = model.parse_losses(losses)
    wrapper.update_params(loss)
    assert all(torch.isfinite(p).all() for p in model.backbone.shared_bases().values())
