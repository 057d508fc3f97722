"""The random state a training checkpoint needs for an exact resume, of every rank.

mmengine stores only the seed; a resumed run then draws other random numbers than the uninterrupted one
(augmentation, proposal sampling). :func:`gather_rng_states` collects the states of Python's, NumPy's and
torch's global generators of *every* rank (a collective call: all ranks must call it) plus the data sampler's
shuffling seed; :func:`restore_rng_states` gives each rank its own states back.

Stored form (``checkpoint['rng_state']``, types that ``torch.load(weights_only=True)`` accepts)::

    dict(world_size=W, ranks=[state of rank 0, ..., state of rank W-1], sampler_seed=int or None,
         val_workers_started=bool)

with each state ``dict(python=..., numpy=..., torch=..., [cuda=...])`` (:func:`rng_state`);
``val_workers_started``: the val dataloader has persistent workers and has started them (its base seed, drawn
from torch's generator, is drawn once per run then). Checkpoints of mmbasis before this form hold rank 0's
state alone (``dict(python=..., numpy=..., torch=...)``); they are read as ``world_size=1``.
"""

import logging
import random
from functools import partial
from typing import List, Optional

import numpy as np
import torch
from mmengine.dataset import worker_init_fn as mmengine_worker_init_fn
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.logging import print_log


def rng_state() -> dict:
    """This process's global random generators' states, in types ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=(name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    python = state['python']
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def train_sampler(runner):
    """The sampler of the runner's train dataloader that owns a shuffling ``seed`` (inside a batch sampler, as
    mmdet's ``AspectRatioBatchSampler``, or the loader's own), or None."""
    loader = runner.train_dataloader
    batch_sampler = getattr(loader, 'batch_sampler', None)
    for sampler in (getattr(batch_sampler, 'sampler', None), getattr(loader, 'sampler', None)):
        if hasattr(sampler, 'seed'):
            return sampler
    return None


def gather_rng_states(runner) -> dict:
    """The stored form (module doc) of the current random state. Collective: every rank must call it."""
    sampler = train_sampler(runner)
    ranks = all_gather_object(rng_state())
    return dict(
        world_size=len(ranks),
        ranks=ranks,
        sampler_seed=getattr(sampler, 'seed', None),
        val_workers_started=_persistent_val_iterator(runner) is not None,
    )


def _persistent_val_iterator(runner):
    """The val dataloader's persistent-workers iterator if it has been started, else None."""
    loop = getattr(runner, '_val_loop', None)
    loader = getattr(loop, 'dataloader', None)
    return getattr(loader, '_iterator', None) if getattr(loader, 'persistent_workers', False) else None


def _normalise(stored: dict) -> dict:
    if 'ranks' in stored:
        return stored
    return dict(world_size=1, ranks=[stored], sampler_seed=None)  # before per-rank states: rank 0's alone


def restore_rng_states(runner, stored: dict) -> Optional[dict]:
    """Give this rank its own stored generator states back and the train data the stored shuffling seed.

    Call it once mmengine's ``Runner.resume`` has finished (it re-seeds the generators when the checkpoint's
    seed differs from the config's, e.g. a config without a seed) and before the first batch is drawn.

    * The train sampler's ``seed`` (data order) is set to the stored one, and the default worker init function
      (mmengine's, which seeds each worker process) to ``runner.seed``, which ``resume`` has made the
      checkpoint's: mmengine builds the train dataloader with the new run's seed, before resuming.
    * The world size is the stored one: each rank gets its own states back; the run continues exactly.
    * Another world size: a warning, and no rank's generators are touched: they stay as mmengine seeded them
      (from the checkpoint's seed), as without mmbasis. The data are split differently anyway, so such a run
      cannot continue the original one exactly.

    Returns this rank's restored state, or None when the states were not restored.
    """
    stored = _normalise(stored)
    _restore_data_seeds(runner, stored['sampler_seed'])
    rank, world_size = get_dist_info()
    if stored['world_size'] != world_size or len(stored['ranks']) != world_size:
        print_log(
            f'the checkpoint holds the random generator states of {stored["world_size"]} process(es), this run has '
            f'{world_size}: the states are NOT restored (every process keeps its generators as mmengine seeded '
            f'them, seed {runner.seed} on this process), so the resumed run does not continue the original random '
            'streams exactly; resume with the same number of processes for an exact continuation',
            logger='current',
            level=logging.WARNING,
        )
        return None
    if stored.get('val_workers_started') and _persistent_val_iterator(runner) is None:
        # With persistent workers the uninterrupted run drew the val loader's base seed from torch's generator
        # only at its first validation. Start it now, before the states are restored, so that the resumed
        # run's next validation draws nothing either.
        loader = runner.val_loop.dataloader
        iter(loader)
    set_rng_state(stored['ranks'][rank])
    return stored['ranks'][rank]


def _restore_data_seeds(runner, sampler_seed: Optional[int]) -> None:
    changed: List[str] = []
    sampler = train_sampler(runner)
    if sampler is not None and sampler_seed is not None and sampler.seed != sampler_seed:
        changed.append(f'sampler seed {sampler.seed} -> {sampler_seed}')
        sampler.seed = sampler_seed
        if hasattr(sampler, '_indices_of_rank'):  # mmengine's InfiniteSampler draws its order when built
            sampler.indices = sampler._indices_of_rank()
    loader = runner.train_dataloader
    init_fn = getattr(loader, 'worker_init_fn', None)
    if (
        isinstance(init_fn, partial)
        and init_fn.func is mmengine_worker_init_fn
        and init_fn.keywords.get('seed') not in (None, runner.seed)
    ):
        changed.append(f'worker seed {init_fn.keywords["seed"]} -> {runner.seed}')
        loader.worker_init_fn = partial(init_fn.func, *init_fn.args, **dict(init_fn.keywords, seed=runner.seed))
    if not changed:
        return
    loop = runner.train_loop
    if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop made its iterator (and workers) when built
        loop.dataloader_iterator = type(loop.dataloader_iterator)(loader)
    print_log(f'train data of the resumed run as in the checkpoint: {", ".join(changed)}', logger='current')
