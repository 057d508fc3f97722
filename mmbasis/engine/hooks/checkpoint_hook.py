"""``SafeCheckpointHook``: mmengine's ``CheckpointHook`` whose checkpoints survive kills and resume exactly.

What it changes (every argument of ``CheckpointHook`` keeps its meaning):

* **Atomic, durable files.** Checkpoints (through the ``local_atomic`` file backend registered here), best
  checkpoints and the ``last_checkpoint`` pointer are written to a temporary file, fsynced, renamed, and the
  directory is fsynced, so a kill (SIGKILL, SIGTERM) or a power loss during a save leaves the previous files
  intact instead of a truncated one. Files get the permissions of a plain write (``0o666`` minus the umask).
  Stale temporary files of an interrupted save are removed at the next start.
* **Keep the old checkpoint until the new one is complete.** mmengine deletes the oldest checkpoint
  (``max_keep_ckpts``) and the previous best checkpoint (``save_best``) *before* writing the new one; a kill in
  between leaves none. Here outdated files are removed after the new one, the checkpoint naming it and the
  pointer exist. A best checkpoint left outdated by a kill before its removal is removed at the resume.
* **Exact resume.** The states of Python's, NumPy's and torch's global random generators of every rank and the
  train sampler's seed go into the checkpoint (:mod:`.rng_state`) and are restored by ``--resume`` once
  mmengine's resume has finished (it re-seeds the generators when the config sets no seed, and builds the train
  dataloader with the new run's seed), so data order, augmentation and proposal sampling continue as in an
  uninterrupted run. When a validation follows the checkpoint's epoch (iteration), the checkpoint is written
  after that validation, which draws from the global generators too, so it holds the states the next epoch
  starts from; a kill during that validation resumes from the previous checkpoint (still exact, only longer).
  If the validation raises (or is interrupted with Ctrl-C), the checkpoint is written then, with the state from
  before the validation, as mmengine would have written it.
"""

import bisect
import glob
import logging
import os
import os.path as osp
from typing import List, Optional, Tuple

from mmdet.registry import HOOKS
from mmengine.dist import get_world_size, is_main_process
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ...compat.mmengine_loops import RestoreAfterSkip, call_on_failure
from ...utils.checkpoint_io import atomic_open
from .rng_state import (
    gather_rng_states,
    restore_rng_states,
    rng_state,
    set_rng_state,
    train_sampler,
)

__all__ = ['ATOMIC_BACKEND', 'AtomicLocalBackend', 'SafeCheckpointHook', 'rng_state', 'set_rng_state']

ATOMIC_BACKEND = 'local_atomic'
#: message-hub key: best checkpoints replaced by a newer best, removed once the checkpoint naming it exists
OUTDATED_BEST = 'outdated_best_ckpts'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put``/``put_text`` replace the target atomically."""

    def put(self, obj: bytes, filepath) -> None:
        with atomic_open(str(filepath), 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        with atomic_open(str(filepath), 'wb') as f:
            f.write(obj.encode(encoding))


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


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
        # (step, meta, random state before the validation) of a checkpoint due after a validation
        self._deferred: Optional[Tuple[int, dict, dict]] = None
        self._resumed_rng: Optional[dict] = None  # the checkpoint's random state, restored in before_train
        self._gathered: Optional[dict] = None  # every rank's random state, gathered for the save under way

    # ----------------------------------------------------------------------------------------------- resume
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # ``_resume`` is how mmengine's Runner tells resuming (restore everything) from ``load_from`` (weights only).
        # Restored in before_train: Runner.resume re-seeds the generators after this hook has run.
        if getattr(runner, '_resume', False) and 'rng_state' in checkpoint:
            self._resumed_rng = checkpoint['rng_state']

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._guard_validation(runner)
        self._warn_persistent_workers(runner)
        if is_main_process() and osp.isdir(self.out_dir):
            for tmp in glob.glob(osp.join(self.out_dir, '.*.pth.*.tmp')) + glob.glob(
                osp.join(runner.work_dir, '.last_checkpoint.*.tmp')
            ):
                os.remove(tmp)
                print_log(f'removed {tmp}, left by an interrupted checkpoint save', logger='current')
        current = {self.best_ckpt_path} if hasattr(self, 'best_ckpt_path') else set()
        current |= set(getattr(self, 'best_ckpt_path_dict', {}).values())
        outdated = [p for p in runner.message_hub.runtime_info.get(OUTDATED_BEST, []) if p not in current]
        self._remove_outdated_best(runner, outdated)
        if self._resumed_rng is not None:  # last of the before_train hooks (priority VERY_LOW)
            state = restore_rng_states(runner, self._resumed_rng)
            self._resumed_rng = None
            loop = runner.train_loop
            if state is not None and isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
                loop.dataloader_iterator = RestoreAfterSkip(
                    loop.dataloader_iterator, loop.iter, lambda: set_rng_state(state)
                )

    @staticmethod
    def _warn_persistent_workers(runner) -> None:
        """Say once that ``--resume`` cannot continue this run exactly: persistent training workers keep their random
        generators across epochs, and no checkpoint can restore the generators of other processes."""
        loader = getattr(runner.train_loop, 'dataloader', None)
        if getattr(loader, 'persistent_workers', False) and getattr(loader, 'num_workers', 0) > 0:
            print_log(
                'SafeCheckpointHook: the train dataloader has persistent_workers=True and '
                f'num_workers={loader.num_workers}; --resume will continue this run correctly but not exactly (the '
                'workers keep their random state across epochs, which a checkpoint cannot hold). Set '
                'train_dataloader.persistent_workers=False for an exact resume, as every mmbasis config does.',
                logger='current',
                level=logging.WARNING,
            )

    # ------------------------------------------------------------------------------------------------- saving
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._gathered is not None:
            checkpoint['rng_state'] = self._gathered
        elif get_world_size() == 1:  # a save that did not come through this hook; one process: nothing to gather
            sampler = train_sampler(runner)
            checkpoint['rng_state'] = dict(
                world_size=1, ranks=[rng_state()], sampler_seed=getattr(sampler, 'seed', None)
            )

    def _save_with_rng(self, runner, filename: str, meta: dict, rng_states: Optional[dict] = None, **kwargs) -> None:
        """``runner.save_checkpoint`` (rank 0 writes) with every rank's random state (gathered now unless given:
        a collective call, every rank must call it)."""
        self._gathered = gather_rng_states(runner) if rng_states is None else rng_states
        try:
            runner.save_checkpoint(
                self.out_dir, filename, self.file_client_args, meta=meta, backend_args=self.backend_args, **kwargs
            )
        finally:
            self._gathered = None

    def _save_checkpoint(self, runner) -> None:
        if self.by_epoch:
            step, meta = runner.epoch + 1, dict(epoch=runner.epoch + 1, iter=runner.iter)
        else:
            step, meta = runner.iter + 1, dict(epoch=runner.epoch, iter=runner.iter + 1)
        if self._validation_follows(runner):
            self._deferred = (step, meta, gather_rng_states(runner))
            print_log(
                f'the checkpoint of {"epoch" if self.by_epoch else "iteration"} {step} is written after the '
                'validation that follows, so that it holds the random state the next one starts from',
                logger='current',
            )
            return
        self._save_checkpoint_with_step(runner, step, meta)

    def _validation_follows(self, runner) -> bool:
        """Whether the train loop validates right after this epoch (iteration): its own condition."""
        loop = runner.train_loop
        if runner.val_loop is None:
            return False
        if self.by_epoch and isinstance(loop, EpochBasedTrainLoop):
            done, last = loop.epoch + 1, loop.max_epochs
        elif not self.by_epoch and isinstance(loop, IterBasedTrainLoop):
            done, last = loop.iter + 1, loop.max_iters
        else:  # another loop, or iteration checkpoints in an epoch loop: save at once, as mmengine does
            return False
        interval = loop.dynamic_intervals[bisect.bisect(loop.dynamic_milestones, done + 1) - 1]
        return done >= loop.val_begin and (done % interval == 0 or done == last)

    def _flush_deferred(self, runner, where: Optional[str] = None) -> None:
        if self._deferred is None:
            return
        step, meta, _ = self._deferred
        self._deferred = None
        if where is not None:
            print_log(f'no validation came after step {step}: its checkpoint is written {where}', logger='current')
        self._save_checkpoint_with_step(runner, step, meta)

    def _guard_validation(self, runner) -> None:
        """Make the val loop write a deferred checkpoint when the validation fails (an exception, Ctrl-C), with
        the random state from before the validation (gathered then: no collective call on this path). The
        checkpoint is not lost; a resume from it misses the failed validation's random draws."""
        if runner.val_loop is None:
            return

        def write_deferred() -> None:
            if self._deferred is not None:
                step, meta, states = self._deferred
                self._deferred = None
                print_log(
                    f'the validation after step {step} failed: its checkpoint is written now, with the random '
                    'state from before the validation',
                    logger='current',
                    level=logging.WARNING,
                )
                self._save_checkpoint_with_step(runner, step, meta, rng_states=states)

        call_on_failure(runner.val_loop, write_deferred, 'guarded_by_safe_checkpoint')

    def before_train_epoch(self, runner) -> None:
        self._flush_deferred(runner, 'before the next epoch')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._flush_deferred(runner, 'before the next iteration')

    def after_val(self, runner) -> None:
        self._flush_deferred(runner, 'after the validation loop')

    def after_train(self, runner) -> None:
        self._flush_deferred(runner, 'at the end of training')
        super().after_train(runner)

    def _save_checkpoint_with_step(self, runner, step, meta, rng_states: Optional[dict] = None) -> None:
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._save_with_rng(
            runner,
            ckpt_filename,
            meta,
            rng_states,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            by_epoch=self.by_epoch,
            **self.args,
        )
        if not is_main_process():
            return
        with atomic_open(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
            f.write(self.last_ckpt)
        if outdated is not None:
            self._remove(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated)))

    def _remove(self, path: str) -> bool:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)
        else:
            return False
        return True

    # ----------------------------------------------------------------------------------------------- best
    def after_val_epoch(self, runner, metrics) -> None:
        if len(metrics) == 0:
            runner.logger.warning(
                'Since `metrics` is an empty dict, the behavior to save the best checkpoint will be skipped in '
                'this evaluation.'
            )
            self._flush_deferred(runner)
            return
        self._save_best_checkpoint(runner, metrics)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's best-checkpoint logic in a safe order: new best checkpoint(s); the regular checkpoint (the
        deferred one, or mmengine's re-save that records the new best); only then the outdated best removed."""
        updated, outdated = self._write_best_checkpoints(runner, metrics) if self.save_best else (False, [])
        if self._deferred is not None:
            self._flush_deferred(runner)
        elif updated and self.last_ckpt is not None:
            step = runner.epoch if self.by_epoch else runner.iter
            self._save_checkpoint_with_step(runner, step, dict(epoch=runner.epoch, iter=runner.iter))
        self._remove_outdated_best(runner, outdated)

    def _write_best_checkpoints(self, runner, metrics) -> Tuple[bool, List[str]]:
        """Write a best checkpoint for every key indicator that improved; return (any improved, paths replaced).

        The replaced paths are also recorded in the message hub (:data:`OUTDATED_BEST`), so that a checkpoint
        written before their removal has them removed when it is resumed.
        """
        if self.by_epoch:
            ckpt_filename, cur_type, cur_time = self.filename_tmpl.format(runner.epoch), 'epoch', runner.epoch
        else:
            ckpt_filename, cur_type, cur_time = self.filename_tmpl.format(runner.iter), 'iter', runner.iter
        if 'auto' in self.key_indicators:
            self._init_rule(self.rules, [list(metrics.keys())[0]])
        hub, single = runner.message_hub, len(self.key_indicators) == 1
        updated, outdated = False, []
        for key_indicator, rule in zip(self.key_indicators, self.rules):
            key_score = metrics[key_indicator]
            best_score_key = 'best_score' if single else f'best_score_{key_indicator}'
            best_ckpt_key = 'best_ckpt' if single else f'best_ckpt_{key_indicator}'
            previous = self.best_ckpt_path if single else self.best_ckpt_path_dict[key_indicator]
            if best_score_key in hub.runtime_info:
                best_score = hub.get_info(best_score_key)
            else:
                best_score = self.init_value_map[rule]
            if key_score is None or not self.is_better_than[key_indicator](key_score, best_score):
                continue
            updated = True
            hub.update_info(best_score_key, key_score)
            best_ckpt_name = f'best_{key_indicator}_{ckpt_filename}'.replace('/', '_')
            path = self.file_backend.join_path(self.out_dir, best_ckpt_name)
            if single:
                self.best_ckpt_path = path
            else:
                self.best_ckpt_path_dict[key_indicator] = path
            hub.update_info(best_ckpt_key, path)
            if previous and previous != path:
                outdated.append(previous)
                hub.update_info(OUTDATED_BEST, list(hub.runtime_info.get(OUTDATED_BEST, [])) + [previous])
            self._save_with_rng(
                runner,
                best_ckpt_name,
                dict(epoch=runner.epoch, iter=runner.iter),
                save_optimizer=False,
                save_param_scheduler=False,
                by_epoch=False,
            )
            runner.logger.info(
                f'The best checkpoint with {key_score:0.4f} {key_indicator} at {cur_time} {cur_type} is saved to '
                f'{best_ckpt_name}.'
            )
        return updated, outdated

    def _remove_outdated_best(self, runner, paths: List[str]) -> None:
        if is_main_process():
            for path in paths:
                if self._remove(path):
                    runner.logger.info(f'The previous best checkpoint {path} is removed')
        if OUTDATED_BEST in runner.message_hub.runtime_info:
            left = [p for p in runner.message_hub.runtime_info[OUTDATED_BEST] if p not in paths]
            runner.message_hub.update_info(OUTDATED_BEST, left)
