"""``FiniteLossHook``: stop training at the first non-finite loss, before it can reach the weights.

mmdet's ``CheckInvalidLossHook`` looks at the total loss every ``interval`` iterations *after* the optimizer
step, so the weights are already poisoned and a checkpoint of them may be written. This hook checks every
loss term (every key containing ``loss``, as mmengine's ``parse_losses`` sums them, ``loss_orth`` included)
and their total inside the detector's forward, i.e. before ``backward`` and the optimizer step, and raises
:class:`NonFiniteLossError` naming the iteration and the offending terms. The parameters are checked before
every checkpoint is written as well (a finite loss can still come with an infinite gradient), so a poisoned
state is never saved and the last good checkpoint stays the one ``--resume`` picks up.

Under DDP the ranks agree through one all-reduce of a flag per iteration, so all of them stop together.
"""

import math
from typing import Dict, List

import torch
from mmdet.registry import HOOKS
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ...utils.misc import check_bool


class NonFiniteLossError(RuntimeError):
    """A loss term, the total loss or a parameter became NaN or infinite; training was stopped."""


def non_finite_terms(losses: Dict[str, object]) -> Dict[str, float]:
    """The loss terms (keys containing ``loss``) of a loss dict that are not finite, and their total.

    Values may be tensors or lists of tensors (mmdet's per-level losses); each is reduced like mmengine's
    ``parse_losses`` (mean, summed over a list). Returns ``{name: value}`` of the offending entries, with
    ``'loss'`` (the total) included when it is not finite although every term is (overflow). One device
    synchronisation when everything is finite.
    """
    terms = {}
    for name, value in losses.items():
        if 'loss' in name:
            parts = value if isinstance(value, (list, tuple)) else [value]
            terms[name] = sum(torch.as_tensor(v).detach().float().mean() for v in parts)
    if not terms:
        return {}
    values = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in terms.values()])
    if bool(torch.isfinite(values).all() & torch.isfinite(values.sum())):
        return {}
    bad = {k: float(v) for k, v in terms.items() if not math.isfinite(float(v))}
    return bad or {'loss': float(values.sum())}


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop training at the first iteration whose loss terms or total are NaN or infinite.

    Enable it in a config::

        custom_hooks = [dict(type='FiniteLossHook')]

    It runs after ``OrthogonalityRegularizerHook`` (lower priority), so ``loss_orth`` is checked too.

    Args:
        check_params_before_save (bool): refuse to write a checkpoint whose parameters are not finite.
        priority: hook priority (default ``'BELOW_NORMAL'``, after the regulariser hook).
    """

    def __init__(self, check_params_before_save: bool = True, priority='BELOW_NORMAL') -> None:
        check_bool('check_params_before_save', check_params_before_save)
        self.priority = priority
        self.check_params_before_save = check_params_before_save
        self._handle = None
        self._runner = None

    def before_train(self, runner) -> None:
        self._remove()
        self._runner = runner
        inner = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._handle = inner.register_forward_hook(self._check, with_kwargs=True)

    def _check(self, module, args, kwargs, output):
        if kwargs.get('mode') != 'loss' or not isinstance(output, dict):
            return output
        bad = non_finite_terms(output)
        if dist.get_world_size() > 1:  # every rank must stop at the same iteration
            flag = torch.tensor([float(bool(bad))], device=next(module.parameters()).device)
            dist.all_reduce(flag)
            if flag.item() and not bad:
                bad = {'(another rank)': float('nan')}
        if bad:
            self._stop(', '.join(f'{k}={v}' for k, v in bad.items()))
        return output

    def _stop(self, what: str) -> None:
        runner = self._runner
        it = runner.iter + 1  # 1-based, as in the log
        last = runner.message_hub.get_info('last_ckpt')
        where = f'the last checkpoint {last} is intact' if last else 'no checkpoint has been written yet'
        msg = (
            f'non-finite loss at iteration {it} (epoch {runner.epoch + 1}): {what}. Training stopped before the '
            f'optimizer step, so the weights were not updated with it; {where} (resume with --resume). Lower '
            'the learning rate, clip gradients (optim_wrapper.clip_grad) or check the data of this iteration.'
        )
        print_log(msg, logger='current', level=40)
        raise NonFiniteLossError(msg)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.check_params_before_save:
            return
        bad: List[str] = [
            k
            for k, v in checkpoint.get('state_dict', {}).items()
            if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
        ]
        if bad:
            msg = (
                f'refusing to write a checkpoint at iteration {runner.iter}: {len(bad)} tensors are not finite '
                f'(first: {", ".join(bad[:3])}); the previous checkpoint is intact'
            )
            print_log(msg, logger='current', level=40)
            raise NonFiniteLossError(msg)

    def _remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._runner = None

    def after_train(self, runner) -> None:
        self._remove()

    def after_run(self, runner) -> None:
        self._remove()
