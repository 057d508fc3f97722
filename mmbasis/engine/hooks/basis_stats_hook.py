"""``BasisStatsHook``: what the shared filter bases do during training, recorded by any config that switches it on.

    custom_hooks = [..., dict(type='BasisStatsHook', interval=20)]

Before the first iteration and every ``interval`` iterations it records, for the backbone's shared bases:

* ``l_orth``: the unweighted orthogonality loss ``L_orth`` (paper pooling, shared bases only, whatever the
  regulariser's settings; recorded with the regulariser off too) and ``orth_max_err``, ``max |B B^T - I|``;
* per basis group (``BasisGroup``: the bases regularised together): ``sigma_min``, ``sigma_max`` (``svdvals`` of
  ``B_g``), ``uses`` (how many convolutions use its bases) and the gradient of its shared bases in the iteration's
  backward pass: ``grad_norm`` (Frobenius norm), ``grad_mean`` and ``grad_max`` of ``|g|``.

The gradients are read where mmengine leaves them: a post-accumulate-grad hook on every trainable shared basis
reads ``p.grad`` once autograd has summed it (before the optimizer wrapper clips, steps and zeroes it; with gradient
accumulation, the sum at the last backward before the step; under DDP, the rank's own gradient). Nothing is drawn
from any random generator and no tensor of the model is written, so a run with the hook trains exactly as without.

Written to ``work_dir/<out_file>`` (JSON lines, rank 0 only; one line per recorded iteration, ``"iter"`` = iterations
done) and, with ``log=True``, to the message hub as ``train/basis/l_orth`` and ``train/basis/orth_max_err`` (so
mmengine's logger and visualiser backends see them). ``record_losses=True`` adds every iteration's loss terms
(``"losses"``: the outputs of ``train_step``, e.g. ``loss``, ``loss_orth``), which the studies need per iteration.
The first line of a training run is ``{"event": "before_train", ...}`` and the last ``{"event": "after_train", ...}``;
every line carries the wall-clock ``time`` it was written (a resumed run appends a second ``before_train``; the
studies count the training time of each process from these).
"""

import json
import math
import os.path as osp
import time
from typing import Dict, List, Optional

import torch
from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...models.layers import BasisConv2d, BasisGroup
from ...models.losses import orthogonality_loss, singular_value_spread
from ...utils.misc import check_bool, check_int

STATS_FILE = 'basis_stats.jsonl'


def _uses(backbone: torch.nn.Module, group: BasisGroup) -> int:
    """How many convolutions use the group's shared bases (the depth of the recursion)."""
    ids = {id(p) for _, p in group.shared}
    return sum(isinstance(m, BasisConv2d) and id(m.shared_basis) in ids for m in backbone.modules())


@HOOKS.register_module()
class BasisStatsHook(Hook):
    """Record ``L_orth``, the singular values and the gradients of the shared bases (see the module docstring).

    Args:
        interval (int): iterations between two records of the bases (1: every iteration). Default 20.
        grad_norms (bool): record the gradients of the shared bases. Default True.
        record_losses (bool): write every iteration's loss terms too. Default False.
        out_file (str): the JSON-lines file, relative to the work dir. Default ``'basis_stats.jsonl'``.
        log (bool): put ``l_orth`` and ``orth_max_err`` into the message hub (logged by mmengine). Default True.

    A model whose backbone has no ``basis_groups()`` (a plain ResNet) records no basis statistics, only the losses
    when asked (so a grid of shared and plain detectors can use one configuration).
    """

    priority = 'NORMAL'  # before the logger hook (BELOW_NORMAL): it logs what this hook put into the message hub

    def __init__(
        self,
        interval: int = 20,
        grad_norms: bool = True,
        record_losses: bool = False,
        out_file: str = STATS_FILE,
        log: bool = True,
    ) -> None:
        check_int('interval', interval, low=1)
        for name, value in (('grad_norms', grad_norms), ('record_losses', record_losses), ('log', log)):
            check_bool(name, value)
        if not isinstance(out_file, str) or not out_file or osp.isabs(out_file):
            raise ValueError(f'out_file={out_file!r} is not allowed: give a file name relative to the work dir')
        self.interval, self.grad_norms, self.record_losses, self.log = interval, grad_norms, record_losses, log
        self.out_file = out_file
        self._groups: List[BasisGroup] = []
        self._uses: List[int] = []
        self._handles: list = []
        self._grads: Dict[int, tuple] = {}  # id(param) -> (sum of squares, sum of |g|, numel, max |g|)
        self._due = False
        self._file = None

    # ----------------------------------------------------------------------------------------------- set-up
    def before_train(self, runner) -> None:
        self._close()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        backbone = getattr(model, 'backbone', None)
        groups = backbone.basis_groups() if callable(getattr(backbone, 'basis_groups', None)) else []
        self._groups, self._uses = list(groups), [_uses(backbone, g) for g in groups]
        if self.grad_norms:
            for g in self._groups:
                for _, p in g.shared:
                    if p.requires_grad:
                        self._handles.append(p.register_post_accumulate_grad_hook(self._read_grad))
        if is_main_process():
            self._file = open(osp.join(runner.work_dir, self.out_file), 'a', encoding='utf-8')  # noqa: SIM115
        self._write(dict(event='before_train', iter=runner.iter, time=time.time(), **self._stats(runner)))

    def _read_grad(self, p: torch.Tensor) -> None:
        if self._due and p.grad is not None:
            g = p.grad.detach().float()
            self._grads[id(p)] = (float(g.pow(2).sum()), float(g.abs().sum()), g.numel(), float(g.abs().max()))

    # -------------------------------------------------------------------------------------------- recording
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._due = (runner.iter + 1) % self.interval == 0
        self._grads = {}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        record = dict(iter=runner.iter + 1)
        if self.record_losses:
            record['losses'] = {
                k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in (outputs or {}).items()
            }
        if self._due:
            record.update(self._stats(runner))
        self._due = False
        if len(record) > 1:
            self._write(record)

    @torch.no_grad()
    def _stats(self, runner) -> dict:
        """The record of the bases now (empty without shared bases), also put into the message hub."""
        if not self._groups:
            return {}
        loss, max_err = orthogonality_loss(self._groups)
        stats = dict(l_orth=float(loss), orth_max_err=float(max_err), groups=[])
        for g, uses in zip(self._groups, self._uses):
            lo, hi = singular_value_spread(g)
            row = dict(name=g.name, family=g.family, uses=uses, sigma_min=lo, sigma_max=hi)
            parts = [self._grads[id(p)] for _, p in g.shared if id(p) in self._grads]
            if parts:
                row.update(
                    grad_norm=math.sqrt(sum(q[0] for q in parts)),
                    grad_mean=sum(q[1] for q in parts) / sum(q[2] for q in parts),
                    grad_max=max(q[3] for q in parts),
                )
            stats['groups'].append(row)
        if self.log:
            runner.message_hub.update_scalar('train/basis/l_orth', stats['l_orth'])
            runner.message_hub.update_scalar('train/basis/orth_max_err', stats['orth_max_err'])
        return stats

    def _write(self, record: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps(dict(record, time=record.get('time', time.time()))) + '\n')
            self._file.flush()

    # --------------------------------------------------------------------------------------------- tear-down
    def after_train(self, runner) -> None:
        self._write(dict(event='after_train', iter=runner.iter, time=time.time()))
        self._close()

    def after_run(self, runner) -> None:
        self._close()

    def _close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._grads, self._due = [], {}, False
        if self._file is not None:
            self._file.close()
            self._file = None


def read_basis_stats(path: str) -> List[dict]:
    """The records of a :class:`BasisStatsHook` file in the order of the iterations; an iteration recorded twice (a
    run resumed from a checkpoint before it) keeps its last record."""
    with open(path, encoding='utf-8') as f:
        records = [json.loads(line) for line in f if line.strip()]
    by_key: Dict[tuple, dict] = {}
    for r in records:
        by_key[(r['iter'], r.get('event') != 'before_train', r.get('event') == 'after_train')] = r
    return [by_key[k] for k in sorted(by_key)]


def stats_path(work_dir: str, out_file: Optional[str] = None) -> str:
    """Where a run's :class:`BasisStatsHook` writes."""
    return osp.join(work_dir, out_file or STATS_FILE)
