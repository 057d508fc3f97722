"""Cluster launches, for real on this machine: two torchrun "nodes" over loopback, and a one-node Slurm cluster.

Every training run is the demo config at the tiny size (tests/test_tools/tiny.py: 4 train images of 64x64, batch 2
per process) for ``EPOCHS`` epochs with 2 processes in all, i.e. a global batch of 4 and one iteration per epoch,
a checkpoint after every epoch and validation only at the end. Every process runs with ``OMP_NUM_THREADS=1``.

What "equal" means here (``torch.equal`` on every tensor of the final checkpoint: weights, buffers, optimizer
state): on the CPU, gloo's all-reduce of 2 ranks and every kernel are deterministic for a given thread count, the
data order is a function of seed, epoch, rank and world size (mmengine's DefaultSampler), and each rank's random
generators start from the same seed whatever launched it. So 2 torchrun nodes of 1 process, 1 node of 2 processes
and 2 Slurm tasks must give the same bits. A 2-process run cannot equal a 1-process run of the same global batch:
each process normalises its own 2 images in BatchNorm (and samples its own proposals), so the reference of every
comparison is the 2-process torchrun run (tools/dist_train.sh), itself tested in test_dist_and_demo.py. Testing
is per image (batch 1 per process): the predictions of ``tools/slurm_test.sh`` with 2 tasks equal a single
process's ``tools/test.py`` exactly.

The Slurm cluster (tests/test_tools/slurm_cluster.py) is Debian's slurm-wlm and munge, installed with apt-get when
missing (as root), with all state in a temporary folder; it is shut down at the end of the module, also when a
test fails. As another user the daemons run as that user (for its own jobs). The tests skip, with the reason
printed, only where the daemons cannot run at all (Slurm missing and no root to install it, or a non-root user
whose daemons fail to start).
"""

import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import mmbasis  # noqa: F401  (allowlist for weights_only loads of full checkpoints)
from tests.helpers import free_port
from tests.helpers.slurm_cluster import DaemonError, LocalSlurm, ensure_slurm_installed
from tests.helpers.tiny import DEMO_CONFIG, REPO, run, tiny_options

EPOCHS = 3
THREADS = dict(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
# the Slurm variables of tools/slurm_*.sh for this CPU-only node: 2 tasks of 1 CPU, no GPU requested
SLURM_TASKS = dict(GPUS='2', GPUS_PER_NODE='2', CPUS_PER_TASK='1', GRES='none')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A data root shared by the module's runs and the config (demo + the test hooks)."""
    tmp = tmp_path_factory.mktemp('cluster')
    config = tmp / 'cfg.py'
    config.write_text(
        f"_base_ = '{DEMO_CONFIG}'\n"
        "custom_imports = dict(imports=['mmbasis', 'tests.plugins.faults'], allow_failed_imports=False)\n"
    )
    return tmp, str(config), str(tmp / 'data')


def _options(data: str) -> list:
    return ['--cfg-options', *tiny_options(data, EPOCHS)]


def _env(**extra) -> dict:
    return dict(PYTHON=sys.executable, PYTHONPATH=str(REPO), **THREADS, **extra)


def _checkpoint(work: str) -> dict:
    return torch.load(osp.join(work, f'epoch_{EPOCHS}.pth'), map_location='cpu', weights_only=True)


def _assert_same_training(work: str, reference: dict) -> None:
    """The final checkpoint of ``work`` equals ``reference`` tensor for tensor (weights, buffers, optimizer)."""
    ckpt = _checkpoint(work)
    assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (EPOCHS, EPOCHS)  # 1 iteration per epoch
    state, ref = ckpt['state_dict'], reference['state_dict']
    assert list(state) == list(ref)
    different = [k for k in state if not torch.equal(state[k], ref[k])]
    assert not different, f'{len(different)} of {len(state)} tensors differ, e.g. {different[:3]}'
    momentum = ckpt['optimizer']['state']
    ref_momentum = reference['optimizer']['state']
    assert momentum.keys() == ref_momentum.keys() and momentum
    for k in momentum:
        assert torch.equal(momentum[k]['momentum_buffer'], ref_momentum[k]['momentum_buffer']), k


@pytest.fixture(scope='module')
def reference(setup):
    """2 processes on one node through tools/dist_train.sh (torchrun): the reference of every comparison."""
    tmp, config, data = setup
    work = str(tmp / 'torchrun-1x2')
    proc = run(
        ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work, *_options(data)],
        env=_env(PORT=free_port()),
    )
    assert 'Distributed training: True' in proc.stdout + proc.stderr
    ckpt = _checkpoint(work)
    # the weights moved: equality below is not that of two untrained models
    assert ckpt['meta']['iter'] == EPOCHS and ckpt['optimizer']['state']
    return ckpt


@pytest.mark.slow
def test_two_nodes_of_one_process_equal_one_node_of_two(setup, reference):
    """tools/dist_train.sh started twice, as node 0 and node 1 of 2 (NNODES, NODE_RANK, MASTER_ADDR, PORT) over
    the loopback address, one process each: bit for bit the run of one node with 2 processes."""
    tmp, config, data = setup
    work = str(tmp / 'torchrun-2x1')
    port = free_port()
    cmd = ['bash', 'tools/dist_train.sh', config, '1', '--work-dir', work, *_options(data)]
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, PYTHONWARNINGS='ignore', **_env(NNODES='2', NODE_RANK=str(rank), PORT=port))
        env['MASTER_ADDR'] = '127.0.0.1'
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=600)[0].decode(errors='replace'))
        finally:
            if p.poll() is None:  # the other node failed: do not leave this one waiting for it
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f'node {rank}:\n{out[-3000:]}'
    assert 'Distributed training: True' in outs[0] and 'GPU number: 2' in outs[0]  # mmengine's name for the world size
    _assert_same_training(work, reference)


# ---------------------------------------------------------------------------------------------- Slurm
@pytest.fixture(scope='module')
def slurm():
    """A running one-node cluster (2 CPUs, partition ``mmbasis``) for the module; always shut down."""
    reason = ensure_slurm_installed()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix='mmbasis-slurm-'))
    cluster = LocalSlurm(root)
    try:
        try:
            cluster.start()
        except DaemonError as e:
            if os.geteuid() != 0:  # slurmd generally needs root; as root a failure is a bug
                pytest.skip(f'the Slurm daemons cannot run as user {os.geteuid()}: {str(e)[:500]}')
            raise
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _slurm(cluster: LocalSlurm, script: str, job: str, args: list, **extra) -> subprocess.Popen:
    """Start ``bash tools/<script> mmbasis JOB ARGS`` against ``cluster`` (2 tasks, loopback rendezvous)."""
    env = cluster.env(
        dict(PYTHONWARNINGS='ignore', **_env(**SLURM_TASKS, MASTER_ADDR='127.0.0.1', MASTER_PORT=free_port()), **extra)
    )
    return subprocess.Popen(
        ['bash', f'tools/{script}', cluster.partition, job, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(cluster: LocalSlurm, proc: subprocess.Popen, timeout: int = 600) -> str:
    try:
        out = proc.communicate(timeout=timeout)[0].decode(errors='replace')
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f'srun did not end in {timeout} s\n{cluster.log_tail()}') from None
    assert proc.returncode == 0, f'{out[-4000:]}\n{cluster.log_tail()}'
    return out


@pytest.fixture(scope='module')
def slurm_trained(slurm, setup):
    tmp, config, data = setup
    work = str(tmp / 'slurm-train')
    out = _finish(slurm, _slurm(slurm, 'slurm_train.sh', 'train', [config, work, *_options(data)]))
    return work, out


@pytest.mark.slow
def test_slurm_train_with_two_tasks_equals_torchrun(slurm_trained, reference):
    work, out = slurm_trained
    # mmdet's srun line (partition, job name, tasks, CPUs per task, kill on bad exit), no --gres with GRES=none
    srun = next(line for line in out.splitlines() if line.startswith('+ srun'))
    assert '-p mmbasis --job-name=train --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --kill-on-bad-exit=1' in srun
    assert '--gres' not in srun and '--launcher=slurm' in srun
    assert 'Distributed training: True' in out and 'GPU number: 2' in out
    assert 'coco/bbox_mAP' in out  # validation at the end, over both tasks
    _assert_same_training(work, reference)


@pytest.mark.slow
def test_slurm_test_with_two_tasks_equals_one_process(slurm, slurm_trained, setup, tmp_path):
    tmp, config, data = setup
    work, _ = slurm_trained
    ckpt = osp.join(work, f'epoch_{EPOCHS}.pth')
    options = _options(data) + ['test_dataloader.batch_size=1']
    slurm_out, single_out = str(tmp_path / 'slurm.pkl'), str(tmp_path / 'single.pkl')
    args = [config, ckpt, '--work-dir', str(tmp_path / 'slurm'), '--out', slurm_out, *options]
    out = _finish(slurm, _slurm(slurm, 'slurm_test.sh', 'test', args))
    assert 'coco/bbox_mAP' in out and '--launcher=slurm' in out
    run(
        ['tools/test.py', config, ckpt, '--work-dir', str(tmp_path / 'single'), '--out', single_out, *options],
        env=_env(),
    )
    with open(slurm_out, 'rb') as f:
        by_slurm = {r['img_id']: r['pred_instances'] for r in pickle.load(f)}
    with open(single_out, 'rb') as f:
        single = {r['img_id']: r['pred_instances'] for r in pickle.load(f)}
    assert sorted(by_slurm) == sorted(single) and len(single) == 2  # both images, gathered from the 2 tasks
    assert sum(len(p['scores']) for p in single.values()) > 0
    for img_id, pred in single.items():
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(by_slurm[img_id][key], pred[key]), (img_id, key)


@pytest.fixture(scope='module')
def cancelled_and_resumed(slurm, setup):
    """A job paused right after its epoch-1 checkpoint (tests/plugins/faults.py PauseAfterEpochHook, so the
    cancellation always lands at the same point) is cancelled with scancel, then the same command with --resume
    runs to the end. Returns the work dir, the weights of epoch 1, the cancelled and the resumed job's output."""
    tmp, config, data = setup
    pause_config = tmp / 'cfg_pause.py'
    marker = tmp / 'paused.jsonl'
    pause_config.write_text(
        f"_base_ = '{config}'\n"
        'custom_hooks = _base_.custom_hooks + '
        f"[dict(type='PauseAfterEpochHook', at_epoch=1, marker='{marker}', seconds=600)]\n"
    )
    work = str(tmp / 'slurm-cancelled')
    proc = _slurm(slurm, 'slurm_train.sh', 'cancelme', [str(pause_config), work, *_options(data)])
    try:
        deadline = time.monotonic() + 600
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert marker.exists(), f'the job never reached its pause\n{slurm.log_tail()}'
        jobs = slurm.job_ids('cancelme')
        assert len(jobs) == 1, jobs
        subprocess.run(['scancel', jobs[0]], env=slurm.env(), check=True, timeout=60)
        cancelled = proc.communicate(timeout=120)[0].decode(errors='replace')
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, cancelled[-2000:]
    deadline = time.monotonic() + 120
    while slurm.job_ids('cancelme') and time.monotonic() < deadline:  # completing: its processes end
        time.sleep(0.5)
    assert not slurm.job_ids('cancelme')
    # cancelled after epoch 1: its checkpoint exists, nothing later
    assert Path(work, 'last_checkpoint').read_text().strip() == osp.join(work, 'epoch_1.pth')
    assert not osp.exists(osp.join(work, 'epoch_2.pth'))
    first = torch.load(osp.join(work, 'epoch_1.pth'), map_location='cpu', weights_only=True)['state_dict']
    resumed = _slurm(slurm, 'slurm_train.sh', 'resumed', [str(pause_config), work, '--resume', *_options(data)])
    return work, first, cancelled, _finish(slurm, resumed)


@pytest.mark.slow
def test_scancel_then_resume_continues_from_the_checkpoint(cancelled_and_resumed):
    work, first, cancelled, resumed = cancelled_and_resumed
    assert 'CANCELLED' in cancelled, cancelled[-2000:]  # slurmstepd's notice, relayed by srun
    assert 'resumed epoch: 1, iter: 1' in resumed
    ckpt = _checkpoint(work)
    assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (EPOCHS, EPOCHS)
    assert any(not torch.equal(v, first[k]) for k, v in ckpt['state_dict'].items())  # it trained on


@pytest.mark.slow
def test_scancel_then_resume_equals_the_uninterrupted_run(cancelled_and_resumed, slurm_trained):
    _assert_same_training(cancelled_and_resumed[0], _checkpoint(slurm_trained[0]))


@pytest.mark.parametrize('script', ['tools/slurm_train.sh', 'tools/slurm_test.sh'])
def test_slurm_scripts_refuse_bad_arguments(script, tmp_path):
    proc = run(['bash', script, 'p', 'j', 'c'], expect_ok=False, timeout=60)
    assert proc.returncode == 2 and 'usage:' in proc.stderr
    # validated before srun runs: a fake srun on the PATH records whether it was called
    fake = tmp_path / 'srun'
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/called\n')
    fake.chmod(0o755)
    path = f'{tmp_path}:{os.environ["PATH"]}'
    for env, message in [
        (dict(GPUS='0'), "GPUS must be a positive integer, got '0'"),
        (dict(GPUS_PER_NODE='two'), "GPUS_PER_NODE must be a positive integer, got 'two'"),
        (dict(CPUS_PER_TASK='-1'), "CPUS_PER_TASK must be a positive integer, got '-1'"),
    ]:
        proc = run(['bash', script, 'p', 'j', 'c', 'w'], expect_ok=False, env=dict(env, PATH=path), timeout=60)
        assert proc.returncode == 2 and message in proc.stderr
        assert not (tmp_path / 'called').exists()
    # mmdet's defaults on a GPU cluster: 8 tasks, 8 per node, 5 CPUs each, one GPU per task; SRUN_ARGS and the
    # tool's arguments passed through word for word
    proc = run(
        ['bash', script, 'gpu', 'job', 'c', 'w', '--cfg-options', 'a=1'],
        env=dict(PATH=path, SRUN_ARGS='--time=1:00:00 --qos=high', PYTHON='python'),
        timeout=60,
    )
    called = (tmp_path / 'called').read_text().split()
    assert called[:8] == [
        '-p',
        'gpu',
        '--job-name=job',
        '--gres=gpu:8',
        '--ntasks=8',
        '--ntasks-per-node=8',
        '--cpus-per-task=5',
        '--kill-on-bad-exit=1',
    ]
    assert called[8:12] == ['--time=1:00:00', '--qos=high', 'python', '-u']
    assert called[-3:] == ['--launcher=slurm', '--cfg-options', 'a=1']


def test_a_missing_slurm_without_root_is_a_skip_reason(monkeypatch):
    import tests.helpers.slurm_cluster as slurm_cluster

    monkeypatch.setattr(slurm_cluster, '_missing_programs', lambda: ['slurmd', 'munged'])
    monkeypatch.setattr(slurm_cluster.os, 'geteuid', lambda: 1000)
    reason = slurm_cluster.ensure_slurm_installed()
    assert reason == (
        'Slurm is not installed (slurmd, munged missing) and installing it needs root: '
        'apt-get install slurmctld slurmd slurm-client munge'
    )
