"""Distributed set-up and tear-down of the command-line tools (mmbasis/utils/cli.py)."""

import torch.distributed as dist

from mmbasis.utils.cli import shutdown_distributed


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
