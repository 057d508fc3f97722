"""The random state stored for an exact resume (mmbasis/engine/hooks/rng_state.py), on a stand-in runner."""

import io
import logging
import random
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler
from mmengine.dataset import worker_init_fn as mmengine_worker_init_fn
from torch.utils.data import DataLoader

from mmbasis.compat.mmengine_loops import RestoreAfterSkip
from mmbasis.engine.hooks import rng_state as rs


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def _runner(sampler_seed: int = 1, worker_seed: int = 1, seed: int = 7):
    dataset = list(range(8))
    loader = DataLoader(
        dataset,
        sampler=DefaultSampler(dataset, seed=sampler_seed),
        worker_init_fn=partial(mmengine_worker_init_fn, num_workers=2, rank=0, seed=worker_seed),
    )
    return SimpleNamespace(train_dataloader=loader, train_loop=SimpleNamespace(), _val_loop=None, seed=seed)


@pytest.fixture
def warnings(monkeypatch):
    """What rng_state logs, as (level, message); still passed on to mmengine's print_log."""
    logged = []
    real = rs.print_log

    def record(msg, logger=None, level=logging.INFO):
        logged.append((level, msg))
        real(msg, logger=logger, level=level)

    monkeypatch.setattr(rs, 'print_log', record)
    return logged


def test_state_round_trip():
    state = rs.rng_state()
    first = _draws()
    rs.set_rng_state(state)
    assert _draws() == first


def test_gathered_form_holds_every_rank_and_the_sampler_seed():
    runner = _runner(sampler_seed=123)
    stored = rs.gather_rng_states(runner)
    assert stored['world_size'] == 1 and len(stored['ranks']) == 1 and stored['sampler_seed'] == 123
    buf = io.BytesIO()
    torch.save(stored, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)['sampler_seed'] == 123  # a checkpoint loads it with weights_only


def test_restore_puts_back_the_generators_and_the_data_seeds(warnings):
    runner = _runner(sampler_seed=1, worker_seed=1, seed=7)
    stored = dict(world_size=1, ranks=[rs.rng_state()], sampler_seed=5)
    expected = _draws()
    assert rs.restore_rng_states(runner, stored) is stored['ranks'][0]
    assert _draws() == expected
    assert runner.train_dataloader.sampler.seed == 5
    assert runner.train_dataloader.worker_init_fn.keywords == dict(num_workers=2, rank=0, seed=7)
    assert warnings == [
        (logging.INFO, 'train data of the resumed run as in the checkpoint: sampler seed 1 -> 5, worker seed 1 -> 7')
    ]


def test_checkpoints_of_before_hold_rank_0_alone():
    runner = _runner()
    old_form = rs.rng_state()  # what mmbasis stored before the per-rank form
    expected = _draws()
    assert rs.restore_rng_states(runner, old_form) is old_form
    assert _draws() == expected
    assert runner.train_dataloader.sampler.seed == 1  # no sampler seed stored: left alone


def test_another_world_size_is_not_restored_and_says_so(warnings):
    """Never rank 0's states for every rank: with another number of processes nothing is restored."""
    runner = _runner(seed=7)
    stored = dict(world_size=2, ranks=[rs.rng_state(), rs.rng_state()], sampler_seed=1)
    _draws()
    now = rs.rng_state()
    assert rs.restore_rng_states(runner, stored) is None
    assert torch.equal(rs.rng_state()['torch'], now['torch'])  # untouched
    level, message = warnings[-1]
    assert (
        level == logging.WARNING and 'states of 2 process(es), this run has 1' in message and 'NOT restored' in message
    )


def test_restore_after_skip_restores_after_exactly_the_skipped_batches():
    state = rs.rng_state()
    expected = _draws()
    iterator = RestoreAfterSkip(iter(range(5)), 2, lambda: rs.set_rng_state(state))
    assert next(iterator) == 0
    _draws()
    assert next(iterator) == 1  # the last skipped batch: restored after it
    assert _draws() == expected
    assert next(iterator) == 2
    assert _draws() != expected  # not restored again


@pytest.mark.parametrize('persistent, workers, warned', [(True, 2, True), (False, 2, False), (True, 0, False)])
def test_persistent_training_workers_are_named_as_not_resumable_exactly(monkeypatch, persistent, workers, warned):
    """Workers that persist across epochs keep random state no checkpoint holds: the hook says so at the start."""
    from mmbasis.engine.hooks import checkpoint_hook as ch

    logged = []
    monkeypatch.setattr(ch, 'print_log', lambda msg, logger=None, level=logging.INFO: logged.append((level, msg)))
    loader = SimpleNamespace(persistent_workers=persistent, num_workers=workers)
    ch.SafeCheckpointHook._warn_persistent_workers(SimpleNamespace(train_loop=SimpleNamespace(dataloader=loader)))
    assert [lvl for lvl, msg in logged if 'persistent_workers=True' in msg] == ([logging.WARNING] if warned else [])
