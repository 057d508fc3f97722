import copy
import os
import os.path as osp
import tempfile
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper

from mmbasis.engine import OrthogonalityRegularizerHook
from mmbasis.models import orthogonality_loss
from tests.helpers import free_port
from tests.helpers.toy import ToyDetector, toy_batch, toy_off_orthonormal

LAMBDA = 10.0


def reference_l_orth(groups):
    """L_orth of digest 2.1 written independently of ``mmbasis.models.losses`` (float64): per family,
    sum_g ||B_g B_g^T - I||_F^2 / sum_g n_g^2, summed over the families."""
    num, den = {}, {}
    for g in groups:
        b = torch.cat([p.reshape(p.shape[0], -1) for _, p in g.shared]).double()
        d = b @ b.T - torch.eye(b.shape[0], dtype=torch.float64)
        num[g.family] = num.get(g.family, 0.0) + (d * d).sum()
        den[g.family] = den.get(g.family, 0) + b.shape[0] ** 2
    return sum(num[f] / den[f] for f in num)


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
    return grads, {k: v.item() for k, v in log_vars.items()}


def test_gradient_is_task_plus_lambda_orth():
    torch.manual_seed(0)
    model = ToyDetector(shared_rank=3, basis_sharing='conv')
    with torch.no_grad():  # move the bases away from orthonormal so the term has a real gradient
        for p in model.backbone.shared_bases().values():
            p.mul_(2.0).add_(0.05)
    batch = toy_batch(2)
    task, _ = _grads(model, batch)
    model.zero_grad()
    reg = reference_l_orth(model.backbone.basis_groups())
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
    bases = [n for n in orth if 'shared_basis' in n]
    assert len(bases) == 8 and set(orth) == set(bases)  # the regulariser reaches the shared bases only
    # ... and it is far above the tolerance of the comparison, so the equality above is a real check
    assert all((total[n] - task[n]).abs().max() > 20 * (1e-4 * task[n].abs().max() + 1e-7) for n in bases)
    hook.after_train(None)
    _, log_vars = _grads(model, batch)
    assert 'loss_orth' not in log_vars  # cleaned up after training


def test_only_in_loss_mode(monkeypatch):
    """Other modes get the model's own output, and the regulariser is not even computed for them."""
    import mmbasis.engine.hooks.orthogonality_hook as hook_module

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return orthogonality_loss(*args, **kwargs)

    monkeypatch.setattr(hook_module, 'orthogonality_loss', spy)
    torch.manual_seed(0)
    model = ToyDetector()
    batch = toy_batch(2)
    plain = model(**batch, mode='tensor')
    _attach(model)
    out = model(**batch, mode='tensor')
    assert calls == [] and type(out) is tuple and len(out) == len(plain)
    assert all(torch.equal(a, b) for a, b in zip(out, plain))
    assert 'loss_orth' in model(**batch, mode='loss') and len(calls) == 1


def test_second_before_train_does_not_stack_the_term():
    model = toy_off_orthonormal(1.2, shared_rank=3)
    expected = LAMBDA * reference_l_orth(model.backbone.basis_groups()).item()
    hook = _attach(model)
    hook.before_train(SimpleNamespace(model=model))  # e.g. runner.train() called again
    assert len(model._forward_hooks) == 1
    assert model(**toy_batch(2), mode='loss')['loss_orth'].item() == pytest.approx(expected, rel=1e-5)
    hook.after_run(None)
    assert len(model._forward_hooks) == 0 and hook._groups == []


@pytest.mark.parametrize(
    'options', [dict(pooling='basis'), dict(include_unique=True), dict(pooling='basis', include_unique=True)]
)
def test_options_reach_the_loss(options):
    torch.manual_seed(0)
    model = ToyDetector(shared_rank=3, unique_rank=2)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.2)
    groups = model.backbone.basis_groups()
    expected, _ = orthogonality_loss(groups, **options)
    paper, _ = orthogonality_loss(groups)
    assert abs(expected.item() - paper.item()) > 1e-3 * paper.item()  # the option changes the value
    _attach(model, **options)
    losses = model(**toy_batch(2), mode='loss')
    assert losses['loss_orth'].item() == pytest.approx(LAMBDA * expected.item(), rel=1e-6)


def test_float32_under_autocast_and_through_a_loss_scaler():
    """CPU stand-in for AMP: bfloat16 autocast around forward (as AmpOptimWrapper.optim_context) and a
    GradScaler: loss_orth stays float32, equals the float32 value, and its gradient goes through the scaler
    with the task loss (same gradients after unscaling as without the scaler)."""
    model = toy_off_orthonormal(1.3, shared_rank=3)
    expected = LAMBDA * reference_l_orth(model.backbone.basis_groups()).item()
    _attach(model)
    grads = []
    for scale in (None, 2.0**12):
        model.zero_grad()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            losses = model(**toy_batch(2), mode='loss')
        assert losses['loss_task'].dtype == torch.bfloat16  # autocast was really on
        assert losses['loss_orth'].dtype == torch.float32
        assert losses['loss_orth'].item() == pytest.approx(expected, rel=1e-5)
        loss, _ = model.parse_losses(losses)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        if scale is None:
            loss.backward()
        else:
            scaler = torch.amp.GradScaler('cpu', init_scale=scale)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        grads.append({n: p.grad.clone() for n, p in model.backbone.shared_bases().items()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-8), n


def _one_update(accumulative_counts: int, regularise: bool = True):
    model = toy_off_orthonormal(1.5, shared_rank=3)
    if regularise:
        _attach(model)
    before = {n: p.detach().clone() for n, p in model.backbone.shared_bases().items()}
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), accumulative_counts=accumulative_counts)
    wrapper.initialize_count_status(model, 0, accumulative_counts)
    for _ in range(accumulative_counts):  # identical micro-batches: the task gradient is the same too
        model.train_step(toy_batch(2), wrapper)
    return {n: before[n] - p.detach() for n, p in model.backbone.shared_bases().items()}


def test_gradient_accumulation_keeps_the_weight_per_update():
    """k micro-steps of the same batch give the same update as one step: loss_orth is added on every
    micro-step and divided by k with the task loss (adding it once per update would weigh it 1/k)."""
    plain = _one_update(1)
    accumulated = _one_update(3)
    task_only = _one_update(1, regularise=False)
    for n in plain:
        assert torch.allclose(plain[n], accumulated[n], rtol=1e-4, atol=1e-6), n
        # the regulariser's share of the update is far above the tolerance (else the check is empty)
        assert (plain[n] - task_only[n]).abs().max() > 1e-3


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
    for bad in (float('nan'), float('inf'), True, '10'):
        with pytest.raises(ValueError, match='must be a finite number >= 0'):
            OrthogonalityRegularizerHook(loss_weight=bad)
    with pytest.raises(ValueError, match="pooling='x'"):
        OrthogonalityRegularizerHook(pooling='x')


STEPS, TOTAL_BATCH = 3, 4


def _train(model, batches, wrapper_model=None):
    """Train; return the logged ``loss_orth`` of every step."""
    run = wrapper_model or model
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    return [run.train_step(batch, wrapper)['loss_orth'].item() for batch in batches]


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
    batches = [
        dict(inputs=toy_batch(TOTAL_BATCH, seed=s)['inputs'][rank * per_rank : (rank + 1) * per_rank])
        for s in range(STEPS)
    ]
    logged = _train(model, batches, ddp)
    if rank == 0:
        torch.save(dict(state=model.state_dict(), loss_orth=torch.tensor(logged)), out_file)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_matches_single_process():
    """BatchNorms are frozen (norm_eval=True: running statistics, identical on every rank), so the only
    difference between the runs is how the batch is split; gradients are averaged by DDP."""
    model = toy_off_orthonormal(1.2, norm_eval=True)
    init = copy.deepcopy(model.state_dict())
    single = ToyDetector(norm_eval=True)
    single.load_state_dict(init)
    single.train()
    _attach(single)
    single_logged = _train(single, [toy_batch(TOTAL_BATCH, seed=s) for s in range(STEPS)])
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'rank0.pth')
        mp.spawn(_ddp_worker, args=(2, int(free_port()), init, out), nprocs=2, join=True)
        saved = torch.load(out, weights_only=True)
    ddp_state = saved['state']
    # the hook ran inside DDP's forward on every step, with the same values as the single process
    assert saved['loss_orth'].tolist() == pytest.approx(single_logged, rel=1e-5)
    assert single_logged[0] > 0
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


class _RecordExpectedLossOrth(Hook):
    """Test probe: lambda * L_orth (independent reference) of the weights each iteration's forward uses
    (single-process run: ``runner.model`` is the detector itself)."""

    priority = 'LOWEST'

    def __init__(self):
        self.expected = []

    def before_train(self, runner):
        # after the Runner's weight init: start away from orthonormal so loss_orth is well above rounding
        with torch.no_grad():
            for p in runner.model.backbone.shared_bases().values():
                p.mul_(1.1)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        groups = runner.model.backbone.basis_groups()
        self.expected.append(LAMBDA * reference_l_orth(groups).item())


@pytest.mark.slow
def test_runner_trains_the_demo_config_and_logs_loss_orth(tmp_path):
    """A real mmengine Runner on our demo config (Faster R-CNN, SharedBasisResNet-18 S16U1; hook enabled by
    the config's custom_hooks line) at a tiny size: loss_orth is logged every iteration with the value of
    lambda * L_orth, summed into the total loss, orth_max_err is logged but not summed, and the forward hook
    is gone after training."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmbasis.utils import get_config_path

    cfg = Config.fromfile(get_config_path('shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'))
    assert dict(type='OrthogonalityRegularizerHook', loss_weight=LAMBDA) in cfg.custom_hooks
    data = str(tmp_path / 'data')
    cfg.merge_from_dict(
        {
            'work_dir': str(tmp_path / 'work'),
            'train_dataloader.dataset.data_root': data,
            'train_dataloader.dataset.num_images': 6,
            'train_dataloader.dataset.img_size': 64,
            'train_dataloader.batch_size': 2,
            'train_dataloader.dataset.pipeline.2.scale': (64, 64),
            'train_cfg.max_epochs': 1,
            'model.backbone.base_channels': 16,
            'model.backbone.shared_rank': 8,
            'model.neck.in_channels': [16, 32, 64, 128],
            'default_hooks.logger.interval': 1,
            'default_hooks.checkpoint': None,
            'param_scheduler': [],
            'log_level': 'WARNING',
        }
    )
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    runner = Runner.from_cfg(cfg)
    probe = _RecordExpectedLossOrth()
    runner.register_hook(probe)
    runner.train()
    hub = runner.message_hub
    logged = hub.get_scalar('train/loss_orth').data[0].tolist()
    assert len(logged) == runner.iter == 3
    assert logged == pytest.approx(probe.expected, rel=1e-4)
    assert all(v > 1e-3 for v in logged)
    loss_keys = [k for k in hub.log_scalars if k.startswith('train/') and 'loss' in k and k != 'train/loss']
    assert 'train/loss_orth' in loss_keys and 'train/loss_cls' in loss_keys
    total = sum(hub.get_scalar(k).data[0] for k in loss_keys)
    assert hub.get_scalar('train/loss').data[0] == pytest.approx(total, rel=1e-5)
    assert len(hub.get_scalar('train/orth_max_err').data[0]) == 3
    model = runner.model
    model.train()
    batch = model.data_preprocessor(next(iter(runner.train_dataloader)), True)
    assert 'loss_orth' not in model(**batch, mode='loss')  # the hook removed its forward hook
