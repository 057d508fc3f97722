"""Distributed launches without a GPU, and their clean end.

For: mmengine 0.10.7, whose ``init_dist`` for the ``pytorch`` and ``slurm`` launchers always calls
``torch.cuda.set_device`` and whose DDP wrapper gets ``device_ids=[LOCAL_RANK]`` (both fail on a machine without
CUDA), and torch 2.14, whose gloo process group destroyed at interpreter exit intermittently aborts a rank that
has finished ("terminate called without an active exception").
Remove when: mmengine initialises CPU launches itself (``init_dist`` skipping ``set_device`` without CUDA, a
``device_ids=None`` wrapper), and torch's gloo group survives interpreter exit; the tests
``tests/test_compat/test_distributed.py`` and ``tests/test_tools/test_cluster_launch.py`` show both.
"""

import gc
import os
import subprocess
from datetime import timedelta

import torch
import torch.distributed as torch_dist
from mmengine.config import Config


def slurm_environment() -> dict:
    """The ``torch.distributed`` environment of a task started by ``srun``, as mmengine's slurm launcher derives it.

    ``RANK`` = ``SLURM_PROCID``, ``WORLD_SIZE`` = ``SLURM_NTASKS``, ``LOCAL_RANK`` = ``SLURM_LOCALID``;
    ``MASTER_PORT`` and ``MASTER_ADDR`` are kept when set, else 29500 and the first host of ``SLURM_NODELIST``
    (``scontrol show hostnames``). Raises ``SystemExit`` naming what is missing.
    """
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST') if k not in os.environ]
    if missing:
        raise SystemExit(
            f'error: --launcher slurm needs the environment srun sets ({", ".join(missing)} missing): '
            'start with tools/slurm_train.sh / tools/slurm_test.sh or srun'
        )
    env = dict(
        RANK=os.environ['SLURM_PROCID'],
        WORLD_SIZE=os.environ['SLURM_NTASKS'],
        LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'),
        MASTER_PORT=os.environ.get('MASTER_PORT', '29500'),
    )
    if 'MASTER_ADDR' in os.environ:
        env['MASTER_ADDR'] = os.environ['MASTER_ADDR']
    else:
        nodes = os.environ['SLURM_NODELIST']
        try:
            proc = subprocess.run(['scontrol', 'show', 'hostnames', nodes], capture_output=True, text=True, timeout=60)
        except OSError as e:
            raise SystemExit(
                f'error: cannot run scontrol to find the first node of {nodes!r} ({e}); set MASTER_ADDR'
            ) from None
        hosts = proc.stdout.split()
        if proc.returncode != 0 or not hosts:
            raise SystemExit(
                f'error: `scontrol show hostnames {nodes}` failed ({proc.stderr.strip()!r}); set MASTER_ADDR'
            )
        env['MASTER_ADDR'] = hosts[0]
    return env


def setup_cpu_distributed(cfg: Config) -> bool:
    """Make ``--launcher pytorch`` / ``slurm`` work on a machine without CUDA (gloo instead of nccl); no-op otherwise.

    mmengine 0.10.7 always calls ``torch.cuda.set_device`` when it initialises a ``pytorch`` or ``slurm`` launch
    and wraps the model in DDP with ``device_ids=[LOCAL_RANK]``; both fail without a GPU. Here the process group
    is initialised with gloo from torchrun's environment (or, for slurm, from srun's: :func:`slurm_environment`,
    exported like mmengine does) and mmengine then skips its own initialisation; the wrapper gets
    ``device_ids=None`` (CPU DDP). Returns True when it did so.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher not in ('pytorch', 'slurm') or torch.cuda.is_available():
        return False
    if launcher == 'slurm':
        os.environ.update(slurm_environment())
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise SystemExit(
            f'error: --launcher pytorch needs the environment torchrun sets ({", ".join(missing)} '
            'missing): start with tools/dist_train.sh / tools/dist_test.sh or torchrun'
        )
    # assigned back: ``Config.setdefault`` returns a plain dict that a missing ``env_cfg`` is not stored as
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}), backend='gloo')
    cfg.env_cfg = dict(cfg.get('env_cfg', {}), dist_cfg=dist_cfg)
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        torch_dist.init_process_group(
            backend='gloo', **({} if timeout is None else dict(timeout=timedelta(seconds=timeout)))
        )
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False),
    )
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True


def shutdown_distributed() -> None:
    """End a distributed run cleanly: wait for every rank, then destroy the default process group.

    Call it after the runner (and the DDP wrapper holding the group) has been released. Otherwise the
    gloo process group dies in the interpreter's exit, in whatever order the ranks reach it; with torch
    2.14 that intermittently aborts a rank that had finished its work ("terminate called without an
    active exception": a joinable native thread destroyed at exit). A no-op without a process group.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        gc.collect()  # drop the released DDP wrapper (and its reference to the group) now, not at exit
        torch_dist.barrier()
        torch_dist.destroy_process_group()
