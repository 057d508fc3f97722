"""Runs that survive faults: kills between and during checkpoints, non-finite losses, long runs.

Every run is the demo config at a tiny size (tests/test_tools/tiny.py: 4 train images of 64x64, batch 2, so 2
iterations per epoch) trained through ``tools/train.py`` in a subprocess. Faults come from test-only hooks
(tests/plugins/faults.py) at fixed iterations or at a fixed point of a checkpoint write, never after a delay.

Resume equality is exact (``==`` on every logged loss and ``torch.equal`` on every tensor): on the CPU each kernel
is deterministic for a given thread count, the data order is a function of seed and epoch (mmengine's
DefaultSampler), and SafeCheckpointHook stores and restores the global random generators, which drive the
augmentation (RandomFlip) and the RPN/RoI samplers. Any difference is therefore a bug, not round-off.
"""

import json
import os
import os.path as osp
import signal

import pytest
import torch

import mmbasis  # noqa: F401  (allowlist for weights_only loads of full checkpoints)
from tests.helpers.tiny import (
    assert_same_tensors,
    read_losses,
    read_state_dict,
    record_losses,
    train_tiny,
)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """The reference: 3 epochs (6 iterations), a checkpoint after every epoch."""
    tmp = tmp_path_factory.mktemp('reference')
    data, work = str(tmp / 'data'), str(tmp / 'work')
    log = str(tmp / 'losses.jsonl')
    train_tiny(work, data, 3, [record_losses(log)])
    return data, read_losses(log), read_state_dict(osp.join(work, 'epoch_3.pth'))


def _assert_same_run(reference, losses_path: str, work: str) -> None:
    _, ref_losses, ref_state = reference
    losses = read_losses(losses_path)
    assert sorted(losses) == list(range(1, 7))
    assert losses == ref_losses  # every loss of every iteration, exactly
    assert_same_tensors(read_state_dict(osp.join(work, 'epoch_3.pth')), ref_state)


@pytest.mark.slow
def test_sigkill_between_checkpoints_then_resume_is_exact(uninterrupted, tmp_path):
    data = uninterrupted[0]
    work, log = str(tmp_path / 'work'), str(tmp_path / 'losses.jsonl')
    proc = train_tiny(work, data, 3, [record_losses(log), "dict(type='KillAtIterHook',at_iter=3)"], expect_ok=False)
    assert proc.returncode == -signal.SIGKILL  # killed in epoch 2, after epoch_1.pth and before epoch_2.pth
    assert sorted(read_losses(log)) == [1, 2, 3]
    assert open(osp.join(work, 'last_checkpoint')).read().endswith('epoch_1.pth')
    state_file = str(tmp_path / 'state.json')
    proc = train_tiny(
        work, data, 3, [record_losses(log), f"dict(type='RecordStateHook',path='{state_file}')"], resume=True
    )
    assert 'resumed epoch: 1, iter: 2' in proc.stdout + proc.stderr
    # iteration 3 ran twice (killed, then again after resuming): the log keeps the resumed one
    _assert_same_run(uninterrupted, log, work)
    with open(state_file, encoding='utf-8') as f:
        state = json.load(f)
    # each shared basis is one tensor used by every block that uses it (S16U1: both convs of the stage's one
    # shared block), and it has exactly one momentum buffer in the optimizer
    assert set(state['uses']) == {f'layer{i}.shared_basis' for i in range(1, 5)}
    assert all(n == 2 for n in state['uses'].values())
    assert all(v == 1 for v in state['momentum_buffers'].values())
    assert all(v == 1 for v in state['shared_in_optimizer'].values())
    assert state['optimizer_states'] == state['params']  # one state per parameter, no duplicates


@pytest.mark.slow
def test_sigterm_while_writing_a_checkpoint_then_resume_is_exact(uninterrupted, tmp_path):
    data = uninterrupted[0]
    work, log = str(tmp_path / 'work'), str(tmp_path / 'losses.jsonl')
    proc = train_tiny(
        work, data, 3, [record_losses(log), "dict(type='TermDuringSaveHook',at_epoch=2)"], expect_ok=False
    )
    assert proc.returncode == -signal.SIGTERM
    # the half-written epoch 2 checkpoint never became epoch_2.pth; the pointer still names epoch 1
    assert not osp.exists(osp.join(work, 'epoch_2.pth'))
    assert [f for f in os.listdir(work) if f.startswith('.epoch_2.pth.') and f.endswith('.tmp')]
    assert open(osp.join(work, 'last_checkpoint')).read().endswith('epoch_1.pth')
    torch.load(osp.join(work, 'epoch_1.pth'), weights_only=True)  # intact
    proc = train_tiny(work, data, 3, [record_losses(log)], resume=True)
    out = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 2' in out and 'left by an interrupted checkpoint save' in out
    assert not [f for f in os.listdir(work) if f.endswith('.tmp')]
    _assert_same_run(uninterrupted, log, work)


@pytest.mark.slow
@pytest.mark.parametrize('term, value', [('loss_cls', 'nan'), ('loss_orth', 'inf')])
def test_non_finite_loss_stops_before_the_step_and_keeps_the_last_checkpoint(uninterrupted, tmp_path, term, value):
    data = uninterrupted[0]
    work = str(tmp_path / 'work')
    inject = f"dict(type='InjectNonFiniteHook',at_iter=4,term='{term}',value=float('{value}'))"
    proc = train_tiny(work, data, 3, [inject], expect_ok=False)
    assert proc.returncode == 1
    message = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert len(message) == 1 and 'Traceback' not in proc.stderr
    assert f'non-finite loss at iteration 4 (epoch 2): {term}={value}' in message[0]
    assert 'epoch_1.pth is intact' in message[0]
    assert sorted(f for f in os.listdir(work) if f.endswith('.pth')) == ['epoch_1.pth']
    assert open(osp.join(work, 'last_checkpoint')).read().endswith('epoch_1.pth')
    # without the fault, --resume continues from that checkpoint and ends as the uninterrupted run
    log = str(tmp_path / 'losses.jsonl')
    train_tiny(work, data, 3, [record_losses(log)], resume=True)
    ref_losses = uninterrupted[1]
    assert read_losses(log) == {i: ref_losses[i] for i in (3, 4, 5, 6)}


@pytest.mark.slow
def test_memory_stays_flat_with_two_data_workers(tmp_path):
    """300 iterations with num_workers=2: resident memory of the training process after warm-up grows by less than
    the bound (allocator noise; a leak of one feature map per iteration would add > 60 MB)."""
    data, work = str(tmp_path / 'data'), str(tmp_path / 'work')
    state_file = str(tmp_path / 'state.json')
    extra = (
        'train_dataloader.num_workers=2',
        'train_dataloader.persistent_workers=True',
        'train_dataloader.dataset.num_images=8',
        'default_hooks.logger.interval=50',
        'default_hooks.checkpoint.interval=100',
    )
    train_tiny(
        work, data, 75, [f"dict(type='RecordStateHook',path='{state_file}',rss_every=10)"], extra=extra, timeout=1800
    )
    with open(state_file, encoding='utf-8') as f:
        rss = json.load(f)['rss']
    assert len(rss) == 30  # 75 epochs x 4 iterations, sampled every 10
    warm = rss[5:]  # after 60 iterations
    growth_mb = (max(warm) - warm[0]) / 2**20
    assert growth_mb < 25, f'resident memory grew by {growth_mb:.1f} MB after warm-up: {[r // 2**20 for r in rss]}'


def _bests(work: str) -> list:
    return sorted(f for f in os.listdir(work) if f.startswith('best_') and f.endswith('.pth'))


@pytest.mark.slow
def test_a_best_checkpoint_survives_kills_while_the_best_is_replaced(uninterrupted, tmp_path):
    """Issue 21 point 8: mmengine removes the previous best checkpoint before writing the new one, so a kill in
    between left none. Every validation here makes a new best (``EpochMetricHook``: metric ``test/epoch``)."""
    data, work = uninterrupted[0], str(tmp_path / 'work')
    best_options = (
        'default_hooks.checkpoint.save_best=test/epoch',
        'default_hooks.checkpoint.rule=greater',
        'train_cfg.val_interval=1',
    )
    hooks = ["dict(type='EpochMetricHook')"]

    def best(epoch: int) -> str:
        return f'best_test_epoch_epoch_{epoch}.pth'

    def kill_at_best(epoch: int, when: str) -> str:
        return f"dict(type='KillDuringBestSaveHook',at_epoch={epoch},when='{when}')"

    # killed when half of the best checkpoint of epoch 2 is written: the best of epoch 1 is still there
    proc = train_tiny(work, data, 4, hooks + [kill_at_best(2, 'writing')], extra=best_options, expect_ok=False)
    assert proc.returncode == -signal.SIGKILL
    assert _bests(work) == [best(1)]
    assert torch.load(osp.join(work, best(1)), weights_only=True)['meta']['epoch'] == 1
    assert open(osp.join(work, 'last_checkpoint')).read().endswith('epoch_1.pth')
    # resumed; killed after the best of epoch 3 and the checkpoint of epoch 3 exist, instead of removing the
    # best of epoch 2: both bests are complete
    kill = kill_at_best(3, 'removing')
    proc = train_tiny(work, data, 4, hooks + [kill], resume=True, extra=best_options, expect_ok=False)
    assert proc.returncode == -signal.SIGKILL
    assert 'left by an interrupted checkpoint save' in proc.stdout + proc.stderr
    assert _bests(work) == [best(2), best(3)]
    for epoch in (2, 3):
        assert torch.load(osp.join(work, best(epoch)), weights_only=True)['meta']['epoch'] == epoch
    assert open(osp.join(work, 'last_checkpoint')).read().endswith('epoch_3.pth')
    # resumed to the end: the outdated best goes at the start, then each new best replaces the previous one
    proc = train_tiny(work, data, 4, hooks, resume=True, extra=best_options)
    assert f'The previous best checkpoint {osp.join(work, best(2))} is removed' in proc.stdout + proc.stderr
    assert _bests(work) == [best(4)]
    assert torch.load(osp.join(work, best(4)), weights_only=True)['meta']['epoch'] == 4
    assert not [f for f in os.listdir(work) if f.endswith('.tmp')]


@pytest.mark.slow
def test_a_failing_validation_still_writes_the_checkpoint_it_follows(uninterrupted, tmp_path):
    """A checkpoint that a validation follows is written after it; when the validation raises, it is written
    anyway (with the random state from before the validation), not lost."""
    data, work = uninterrupted[0], str(tmp_path / 'work')
    hooks = ["dict(type='RaiseInValHook',at_epoch=2)"]
    proc = train_tiny(work, data, 2, hooks, extra=('train_cfg.val_interval=1',), expect_ok=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and 'RuntimeError: validation failed on purpose' in out
    assert 'the validation after step 2 failed: its checkpoint is written now' in out
    assert open(osp.join(work, 'last_checkpoint')).read().endswith('epoch_2.pth')
    assert torch.load(osp.join(work, 'epoch_2.pth'), weights_only=True)['meta']['epoch'] == 2
