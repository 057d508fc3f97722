"""``SafeCheckpointHook``: mmengine's ``CheckpointHook`` whose checkpoints survive kills and resume exactly.

What it changes (every argument of ``CheckpointHook`` keeps its meaning):

* **Atomic files.** Checkpoints (through the ``local_atomic`` file backend registered here) and the
  ``last_checkpoint`` pointer are written to a temporary file, fsynced and renamed, so a kill (SIGKILL,
  SIGTERM, power loss) during a save leaves the previous files intact instead of a truncated one.
  Stale temporary files of an interrupted save are removed at the next start.
* **Keep the old checkpoint until the new one is complete.** mmengine deletes the oldest checkpoint
  (``max_keep_ckpts``) *before* writing the new one; with ``max_keep_ckpts=1`` a kill during the save
  leaves no checkpoint at all. Here the outdated file is removed after the new one and the pointer exist.
* **Exact resume.** The states of Python's, NumPy's and torch's global random generators go into the
  checkpoint and are restored by ``--resume``, so data augmentation and proposal sampling continue as in
  an uninterrupted run (mmengine restores the seed, not the generators' states).
"""

import glob
import os
import os.path as osp
import random
from typing import Optional

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ...utils.checkpoint_io import atomic_open

ATOMIC_BACKEND = 'local_atomic'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put``/``put_text`` replace the target atomically."""

    def put(self, obj: bytes, filepath) -> None:
        with atomic_open(str(filepath), 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        with atomic_open(str(filepath), 'wb') as f:
            f.write(obj.encode(encoding))


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


def rng_state() -> dict:
    """The global random generators' states, in types ``torch.load(weights_only=True)`` accepts."""
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


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic files, keep-until-replaced and random-generator states (see module doc).

    Use it in place of mmengine's: ``default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', interval=1))``.
    """

    def __init__(self, *args, backend_args: Optional[dict] = None, **kwargs) -> None:
        out_dir = kwargs.get('out_dir')
        if (
            backend_args is None
            and kwargs.get('file_client_args') is None
            and (out_dir is None or '://' not in str(out_dir))
        ):
            backend_args = dict(backend=ATOMIC_BACKEND)  # local files: write atomically
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and osp.isdir(self.out_dir):
            for tmp in glob.glob(osp.join(self.out_dir, '.*.pth.*.tmp')) + glob.glob(
                osp.join(runner.work_dir, '.last_checkpoint.*.tmp')
            ):
                os.remove(tmp)
                print_log(f'removed {tmp}, left by an interrupted checkpoint save', logger='current')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # ``_resume`` is how mmengine's Runner tells resuming (restore everything) from ``load_from`` (weights only).
        if getattr(runner, '_resume', False) and 'rng_state' in checkpoint:
            set_rng_state(checkpoint['rng_state'])

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():
            return
        with atomic_open(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
            f.write(self.last_ckpt)
        if outdated is not None:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(path)
