"""Distributed set-up and tear-down of the command-line tools without a GPU (mmbasis/compat/distributed.py)."""

import os

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from mmbasis.compat.distributed import setup_cpu_distributed, shutdown_distributed, slurm_environment

SRUN_ENV = dict(SLURM_PROCID='3', SLURM_NTASKS='4', SLURM_LOCALID='1', SLURM_NODELIST='node[07-08]')


def test_shutdown_distributed_destroys_the_group(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        shutdown_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_shutdown_distributed_without_a_group_is_a_no_op():
    assert not dist.is_initialized()
    shutdown_distributed()
    assert not dist.is_initialized()


def _fake_scontrol(tmp_path, monkeypatch, script: str) -> None:
    scontrol = tmp_path / 'scontrol'
    scontrol.write_text('#!/bin/sh\n' + script)
    scontrol.chmod(0o755)
    monkeypatch.setenv('PATH', f'{tmp_path}:/usr/bin:/bin')


def test_slurm_environment_as_mmengine_derives_it(tmp_path, monkeypatch):
    for k, v in SRUN_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv('MASTER_ADDR', raising=False)
    monkeypatch.delenv('MASTER_PORT', raising=False)
    # the first host of the node list, from scontrol (which srun's nodes have)
    _fake_scontrol(tmp_path, monkeypatch, 'test "$*" = "show hostnames node[07-08]" && printf "node07\\nnode08\\n"')
    env = slurm_environment()
    assert env == dict(RANK='3', WORLD_SIZE='4', LOCAL_RANK='1', MASTER_PORT='29500', MASTER_ADDR='node07')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', '12345')
    env = slurm_environment()  # both kept when set (tools/slurm_train.sh documents them)
    assert env['MASTER_ADDR'] == '127.0.0.1' and env['MASTER_PORT'] == '12345'


def test_slurm_environment_names_what_is_missing(tmp_path, monkeypatch):
    for k in SRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('SLURM_PROCID', '0')
    with pytest.raises(SystemExit, match=r'needs the environment srun sets \(SLURM_NTASKS, SLURM_NODELIST missing\)'):
        slurm_environment()
    for k, v in SRUN_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv('MASTER_ADDR', raising=False)
    _fake_scontrol(tmp_path, monkeypatch, 'echo "no such node" >&2; exit 1')
    with pytest.raises(
        SystemExit, match=r"`scontrol show hostnames node\[07-08\]` failed \('no such node'\); set MASTER_ADDR"
    ):
        slurm_environment()


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path only runs without CUDA')
def test_setup_cpu_distributed_for_a_slurm_task(tmp_path, monkeypatch):
    """--launcher slurm on a machine without CUDA: gloo, initialised from srun's variables, CPU DDP."""
    monkeypatch.setenv('SLURM_PROCID', '0')
    monkeypatch.setenv('SLURM_NTASKS', '1')
    monkeypatch.setenv('SLURM_LOCALID', '0')
    monkeypatch.setenv('SLURM_NODELIST', 'localhost')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    from tests.helpers import free_port

    monkeypatch.setenv('MASTER_PORT', free_port())
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'):  # recorded, so that what setup_cpu_distributed sets is undone
        monkeypatch.setenv(k, 'overwritten')
    cfg = Config(dict(launcher='slurm'))
    try:
        assert setup_cpu_distributed(cfg)
        assert dist.is_initialized() and dist.get_backend() == 'gloo' and dist.get_world_size() == 1
        assert cfg.env_cfg.dist_cfg.backend == 'gloo' and cfg.model_wrapper_cfg.device_ids is None
        assert (os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['LOCAL_RANK']) == ('0', '1', '0')
    finally:
        shutdown_distributed()
    assert not setup_cpu_distributed(Config(dict(launcher='none')))
