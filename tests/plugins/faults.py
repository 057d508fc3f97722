"""Test-only hooks that record a run or inject faults into it, loaded into a training subprocess with
``--cfg-options custom_imports.imports="['mmbasis','tests.plugins.faults']"`` (PYTHONPATH = repository root).

Faults are injected at fixed iterations or at a fixed point of a checkpoint write, never after a delay, so every
test that uses them is deterministic.
"""

import json
import os
import resource
import signal
import time

import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

import mmbasis.engine.hooks.checkpoint_hook as checkpoint_hook


def _append(path: str, record: dict) -> None:
    with open(path, 'a', encoding='utf-8') as f:
        f.write(json.dumps(record) + '\n')
        f.flush()
        os.fsync(f.fileno())  # the next line may be a SIGKILL


@HOOKS.register_module()
class RecordLossesHook(Hook):
    """Appends ``{"iter": i, "losses": {...}}`` (1-based iteration, full float precision) to ``path``
    (``{rank}`` in it is replaced by the process's rank: one file per process of a distributed run)."""

    priority = 'LOWEST'

    def __init__(self, path: str) -> None:
        self.path = path.format(rank=get_rank())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        losses = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in (outputs or {}).items()}
        _append(self.path, dict(iter=runner.iter + 1, losses=losses))


@HOOKS.register_module()
class EpochMetricHook(Hook):
    """Adds the metric ``test/epoch`` (the epoch just validated) to every validation's metrics, before the
    checkpoint hook sees them: with ``save_best='test/epoch'`` every validation makes a new best checkpoint."""

    priority = 'NORMAL'

    def after_val_epoch(self, runner, metrics=None) -> None:
        metrics['test/epoch'] = runner.epoch


@HOOKS.register_module()
class KillDuringBestSaveHook(Hook):
    """SIGKILL around the best checkpoint of epoch ``at_epoch`` (the checkpoint saved without optimizer):
    ``when='writing'``: after half of its bytes; ``when='removing'``: instead of removing the previous best."""

    def __init__(self, at_epoch: int, when: str) -> None:
        assert when in ('writing', 'removing'), when
        self.at_epoch, self.when = at_epoch, when

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        if 'optimizer' in checkpoint or checkpoint['meta']['epoch'] != self.at_epoch:
            return
        if self.when == 'writing':

            def put(backend, obj, filepath):
                with checkpoint_hook.atomic_open(str(filepath), 'wb') as f:
                    f.write(obj[: len(obj) // 2])
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)

            checkpoint_hook.AtomicLocalBackend.put = put
        else:
            remove = checkpoint_hook.AtomicLocalBackend.remove

            def remove_or_kill(backend, filepath):
                if os.path.basename(str(filepath)).startswith('best_'):
                    os.kill(os.getpid(), signal.SIGKILL)
                remove(backend, filepath)

            checkpoint_hook.AtomicLocalBackend.remove = remove_or_kill


@HOOKS.register_module()
class KillAtIterHook(Hook):
    """Sends ``signum`` (default SIGKILL) to this process right after iteration ``at_iter`` (1-based)."""

    priority = 'LOWEST'

    def __init__(self, at_iter: int, signum: int = int(signal.SIGKILL)) -> None:
        self.at_iter, self.signum = at_iter, signum

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), self.signum)


@HOOKS.register_module()
class TermDuringSaveHook(Hook):
    """SIGTERM while the checkpoint of epoch ``at_epoch`` is being written: after half of its bytes."""

    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        if checkpoint['meta']['epoch'] != self.at_epoch:
            return

        def put(backend, obj, filepath):
            with checkpoint_hook.atomic_open(str(filepath), 'wb') as f:
                f.write(obj[: len(obj) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGTERM)  # default action: the process ends here

        checkpoint_hook.AtomicLocalBackend.put = put


@HOOKS.register_module()
class RaiseInValHook(Hook):
    """Raises ``RuntimeError('validation failed on purpose')`` in the validation after epoch ``at_epoch``."""

    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.epoch == self.at_epoch:
            raise RuntimeError('validation failed on purpose')


@HOOKS.register_module()
class InjectNonFiniteHook(Hook):
    """Replaces loss term ``term`` by ``value`` (nan/inf) at iteration ``at_iter`` (1-based), inside the forward.

    Priority 55: after the regulariser's forward hook (50, so ``loss_orth`` exists) and before the
    FiniteLossHook's (60), exactly where a real non-finite value would appear.
    """

    priority = 55

    def __init__(self, at_iter: int, term: str, value: float = float('nan')) -> None:
        self.at_iter, self.term, self.value = at_iter, term, value

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model

        def poison(module, args, kwargs, output):
            if kwargs.get('mode') == 'loss' and runner.iter + 1 == self.at_iter:
                output = dict(output)
                value = output[self.term]
                output[self.term] = [v * self.value for v in value] if isinstance(value, list) else value * self.value
            return output

        model.register_forward_hook(poison, with_kwargs=True)


@HOOKS.register_module()
class RecordStateHook(Hook):
    """At the end of training writes to ``path``: whether every block uses its stage's shared tensor (identity),
    the optimizer-state entries of the shared bases, the resident memory samples (every ``rss_every`` iterations)."""

    priority = 'LOWEST'

    def __init__(self, path: str, rss_every: int = 10) -> None:
        self.path, self.rss_every, self.rss = path, rss_every, []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if (runner.iter + 1) % self.rss_every == 0:
            with open('/proc/self/statm') as f:
                self.rss.append(int(f.read().split()[1]) * resource.getpagesize())

    def after_train(self, runner) -> None:
        from mmbasis.models.layers import BasisConv2d

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        bases = model.backbone.shared_bases()
        uses = {name: 0 for name in bases}
        for m in model.backbone.modules():
            if isinstance(m, BasisConv2d) and m.shared_basis is not None:
                owner = [n for n, p in bases.items() if p is m.shared_basis]
                uses[owner[0] if owner else 'not a stage tensor'] = (
                    uses.get(owner[0] if owner else 'not a stage tensor', 0) + 1
                )
        state = runner.optim_wrapper.optimizer.state
        params = [p for g in runner.optim_wrapper.optimizer.param_groups for p in g['params']]
        momentum = {n: int(p in state and 'momentum_buffer' in state[p]) for n, p in bases.items()}
        with open(self.path, 'w', encoding='utf-8') as f:
            json.dump(
                dict(
                    uses=uses,
                    momentum_buffers=momentum,
                    shared_in_optimizer={n: sum(q is p for q in params) for n, p in bases.items()},
                    optimizer_states=len(state),
                    params=len(params),
                    rss=self.rss,
                ),
                f,
            )


@HOOKS.register_module()
class PauseAfterEpochHook(Hook):
    """After epoch ``at_epoch`` (its checkpoint and ``last_checkpoint`` written: priority below the checkpoint
    hook's) every rank waits up to ``seconds``; rank 0 first creates ``marker``. A test cancels the job during
    the wait (``scancel``), so the interruption always lands at the same point of the run. A resumed run starts
    after ``at_epoch`` and never pauses. Draws no random numbers: the run is otherwise unchanged."""

    priority = 'LOWEST'

    def __init__(self, at_epoch: int, marker: str, seconds: float = 300.0) -> None:
        self.at_epoch, self.marker, self.seconds = at_epoch, marker, seconds

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 != self.at_epoch:  # runner.epoch counts the finished epochs only after this hook
            return
        if runner.rank == 0:
            _append(self.marker, dict(epoch=runner.epoch + 1, iter=runner.iter))
        time.sleep(self.seconds)


@HOOKS.register_module()
class RecordLossDtypesHook(Hook):
    """Appends ``{"iter": i, "dtypes": {name: dtype}, "finite": bool}`` for the loss dict of every training
    forward (inside autocast under ``--amp``) to ``path``. Priority 56: its forward hook sees the output after the
    regulariser's (50) has added ``loss_orth``."""

    priority = 56

    def __init__(self, path: str) -> None:
        self.path = path

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model

        def record(module, args, kwargs, output):
            if kwargs.get('mode') == 'loss':
                tensors = {k: v for k, v in output.items() if torch.is_tensor(v)}
                _append(
                    self.path,
                    dict(
                        iter=runner.iter + 1,
                        dtypes={k: str(v.dtype) for k, v in tensors.items()},
                        finite=all(bool(torch.isfinite(v).all()) for v in tensors.values()),
                    ),
                )
            return output

        model.register_forward_hook(record, with_kwargs=True)


@HOOKS.register_module()
class RecordNormTypesHook(Hook):
    """Writes ``{"backbone_norms": [class names]}`` of the backbone's normalisation layers, as the model trains
    them (after the runner built and wrapped it), to ``path`` (rank 0)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        names = {
            type(m).__name__ for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)
        }
        if runner.rank == 0:
            with open(self.path, 'w', encoding='utf-8') as f:
                json.dump(dict(backbone_norms=sorted(names)), f)
