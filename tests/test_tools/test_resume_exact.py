"""``--resume`` continues a run exactly in the settings where mmengine alone does not: a config without a seed,
a validation at the checkpointed epoch, data-loader workers, an iteration-based loop, several processes.

Each test trains an uninterrupted reference (tiny demo config, tests/test_tools/tiny.py), resumes a copy of one
of its early checkpoints in another work dir and compares every later loss (``==``) and every tensor of the final
checkpoint (``torch.equal``). Without a seed the reference and the resumed run start with different random seeds
(mmengine draws one); only the checkpoint can make them agree.
"""

import os
import os.path as osp
import shutil

import pytest
import torch

import mmbasis  # noqa: F401  (allowlist for weights_only loads of full checkpoints)
from tests.helpers import umask
from tests.helpers.tiny import assert_same_tensors, read_losses, read_state_dict, record_losses, train_tiny

NO_SEED_VAL_EVERY_EPOCH = (
    'randomness.seed=None',
    'train_cfg.val_interval=1',
    'default_hooks.checkpoint.max_keep_ckpts=-1',
)
SEED_CHANGED = 'train data of the resumed run as in the checkpoint: sampler seed'
WORKERS = {
    'workers0': (),
    # 2 train workers started every epoch; 2 persistent val workers (their iterator starts at the first validation)
    'workers2': (
        'train_dataloader.num_workers=2',
        'val_dataloader.num_workers=2',
        'val_dataloader.persistent_workers=True',
    ),
}


def _copy_checkpoint(src_work: str, name: str, work: str) -> str:
    """A fresh work dir holding only ``name`` of ``src_work``, its ``last_checkpoint`` naming it."""
    os.makedirs(work)
    shutil.copy(osp.join(src_work, name), osp.join(work, name))
    with open(osp.join(work, 'last_checkpoint'), 'w', encoding='utf-8') as f:
        f.write(osp.join(work, name))
    return osp.join(work, name)


@pytest.fixture(scope='module')
def unseeded(tmp_path_factory):
    """``unseeded(workers)``: 3 epochs without a seed, validating after every epoch, every checkpoint kept, files
    made under umask 027; trained once per ``workers`` setting (:data:`WORKERS`) for the whole module."""
    runs = {}

    def reference(workers: str) -> dict:
        if workers not in runs:
            tmp = tmp_path_factory.mktemp(f'unseeded-{workers}')
            data, work, log = str(tmp / 'data'), str(tmp / 'work'), str(tmp / 'losses.jsonl')
            extra = NO_SEED_VAL_EVERY_EPOCH + WORKERS[workers]
            with umask(0o027):
                train_tiny(work, data, 3, [record_losses(log)], extra=extra)
            runs[workers] = dict(data=data, work=work, losses=read_losses(log), extra=extra)
        return runs[workers]

    return reference


@pytest.mark.slow
@pytest.mark.parametrize('workers, tool', [('workers0', 'ours'), ('workers0', 'mmdet'), ('workers2', 'ours')])
def test_resume_without_seed_validating_every_epoch_is_exact(unseeded, workers, tool, tmp_path):
    """Issue 21 points 1 and 2: before, the losses differed from the first resumed iteration on."""
    reference = unseeded(workers)
    work, log = str(tmp_path / 'work'), str(tmp_path / 'losses.jsonl')
    ckpt = _copy_checkpoint(reference['work'], 'epoch_1.pth', work)
    proc = train_tiny(
        work,
        reference['data'],
        3,
        [record_losses(log)],
        resume=True if tool == 'ours' else ckpt,
        extra=reference['extra'],
        tool=tool,
    )
    out = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 2' in out
    assert read_losses(log) == {i: reference['losses'][i] for i in (3, 4, 5, 6)}
    ref_state = read_state_dict(osp.join(reference['work'], 'epoch_3.pth'))
    assert_same_tensors(read_state_dict(osp.join(work, 'epoch_3.pth')), ref_state)
    assert SEED_CHANGED in out  # the new run's own seed was another one: the checkpoint's was put back


@pytest.mark.slow
def test_training_files_get_the_umask_permissions(unseeded):
    """Issue 21 point 7: checkpoints, the pointer and the generated dataset of a run under umask 027."""
    reference = unseeded('workers0')
    work = reference['work']
    for name in ('epoch_1.pth', 'epoch_3.pth', 'last_checkpoint'):
        assert oct(os.stat(osp.join(work, name)).st_mode & 0o777) == oct(0o640), name
    assert oct(os.stat(osp.join(reference['data'], 'train')).st_mode & 0o777) == oct(0o750)


ITER_LOOP = (
    "train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=6, val_interval=2)",
    "train_dataloader = dict(sampler=dict(type='InfiniteSampler', shuffle=True))",
    "param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=2)]",
    'default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2, max_keep_ckpts=-1))',
    'log_processor = dict(by_epoch=False)',
    'randomness = dict(seed=None)',
)


@pytest.mark.slow
def test_iteration_based_loop_resume_is_exact(tmp_path):
    """IterBasedTrainLoop skips the batches already trained after a resume, running their random augmentation;
    the generators are restored after that skip. Before, the losses differed from the first resumed iteration."""
    data, ref_work, ref_log = str(tmp_path / 'data'), str(tmp_path / 'ref'), str(tmp_path / 'ref.jsonl')
    options = dict(config_lines=ITER_LOOP, drop_options=('train_cfg.', 'param_scheduler.', 'default_hooks.checkpoint'))
    train_tiny(ref_work, data, 1, [record_losses(ref_log)], **options)
    ref_losses = read_losses(ref_log)
    assert sorted(ref_losses) == list(range(1, 7))
    work, log = str(tmp_path / 'work'), str(tmp_path / 'losses.jsonl')
    _copy_checkpoint(ref_work, 'iter_2.pth', work)
    proc = train_tiny(work, data, 1, [record_losses(log)], resume=True, **options)
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert read_losses(log) == {i: ref_losses[i] for i in (3, 4, 5, 6)}
    assert_same_tensors(
        read_state_dict(osp.join(work, 'iter_6.pth')), read_state_dict(osp.join(ref_work, 'iter_6.pth'))
    )


@pytest.mark.slow
def test_two_processes_resume_each_with_its_own_random_state(tmp_path):
    """Issue 21 point 3: with ``diff_rank_seed=True`` every rank has its own random streams; the checkpoint holds
    each rank's states and each rank gets its own back (before, every rank got rank 0's)."""
    data = str(tmp_path / 'data')
    extra = NO_SEED_VAL_EVERY_EPOCH + ('randomness.diff_rank_seed=True', 'train_dataloader.dataset.num_images=8')
    ref_work, ref_log = str(tmp_path / 'ref'), str(tmp_path / 'ref.{rank}.jsonl')
    train_tiny(ref_work, data, 3, [record_losses(ref_log)], extra=extra, tool='dist2', timeout=900)
    work, log = str(tmp_path / 'work'), str(tmp_path / 'losses.{rank}.jsonl')
    _copy_checkpoint(ref_work, 'epoch_1.pth', work)
    proc = train_tiny(work, data, 3, [record_losses(log)], resume=True, extra=extra, tool='dist2', timeout=900)
    assert 'resumed epoch: 1, iter: 2' in proc.stdout + proc.stderr
    for rank in (0, 1):  # 8 images, 2 per batch and process: 2 iterations per epoch
        ref_losses = read_losses(ref_log.format(rank=rank))
        assert read_losses(log.format(rank=rank)) == {i: ref_losses[i] for i in (3, 4, 5, 6)}, f'rank {rank}'
    assert_same_tensors(
        read_state_dict(osp.join(work, 'epoch_3.pth')), read_state_dict(osp.join(ref_work, 'epoch_3.pth'))
    )
    stored = torch.load(osp.join(ref_work, 'epoch_1.pth'), weights_only=True)['rng_state']
    assert stored['world_size'] == 2 and len(stored['ranks']) == 2
    assert not torch.equal(stored['ranks'][0]['torch'], stored['ranks'][1]['torch'])


TREES_EMA = (
    "dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.005, gamma=200, update_buffers=True, priority=49)"
)


@pytest.mark.slow
def test_resume_with_the_trees_ema_is_exact(tmp_path):
    """The real-image configs add mmdet's EMAHook (configs/_base_/datasets/deepforest_trees.py): a resumed run
    continues the raw and the averaged weights exactly (the checkpoint's state_dict holds the average)."""
    data = str(tmp_path / 'data')
    ref_work, ref_log = str(tmp_path / 'ref'), str(tmp_path / 'ref.jsonl')
    extra = ('train_cfg.val_interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1')
    train_tiny(ref_work, data, 3, [record_losses(ref_log), TREES_EMA], extra=extra)
    work, log = str(tmp_path / 'work'), str(tmp_path / 'losses.jsonl')
    _copy_checkpoint(ref_work, 'epoch_1.pth', work)
    proc = train_tiny(work, data, 3, [record_losses(log), TREES_EMA], resume=True, extra=extra)
    assert 'resumed epoch: 1' in proc.stdout + proc.stderr
    reference = read_losses(ref_log)
    resumed = read_losses(log)
    assert resumed and resumed == {i: reference[i] for i in resumed}
    ref_ckpt = torch.load(osp.join(ref_work, 'epoch_3.pth'), map_location='cpu', weights_only=False)
    ckpt = torch.load(osp.join(work, 'epoch_3.pth'), map_location='cpu', weights_only=False)
    for key in ('state_dict', 'ema_state_dict'):
        assert_same_tensors(ckpt[key], ref_ckpt[key])
