"""``OrthogonalityRegularizerHook``: adds ``loss_weight * L_orth`` to the detector's loss dict.

Why a forward hook: mmengine runs forward, ``parse_losses``, backward, step and zero_grad inside
``train_step``; a loss term must therefore be part of the loss dict that forward returns. The hook
registers a forward hook (with kwargs) on the unwrapped detector that, in ``mode='loss'`` only, appends

* ``loss_orth``: ``loss_weight * L_orth`` (float32). Its key contains ``loss``, so mmengine sums it into
  the one backward pass, divides it by ``accumulative_counts`` like every loss, scales it with the AMP
  loss scaler and logs it;
* ``orth_max_err``: ``max |B B^T - I|`` over the bases, a diagnostic that is logged but not optimised.

Because it runs inside the inner module's forward it also runs inside DDP's forward (and inside
``optim_context``: ``no_sync`` during accumulation, autocast under AMP, which the loss disables for itself).
"""

import math
from typing import Dict, List, Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import Tensor

from ...models.layers import BasisGroup
from ...models.losses import POOLINGS, orthogonality_loss


@HOOKS.register_module()
class OrthogonalityRegularizerHook(Hook):
    """Orthogonality regulariser on the backbone's shared filter bases.

    Enable it in a config with one line::

        custom_hooks = [dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)]

    Args:
        loss_weight (float): ``lambda``; the paper uses 10. Must be >= 0.
        pooling (str): ``'paper'`` (default; pooled per family over the stages) or ``'basis'`` (mean of the
            per-basis means). See :func:`mmbasis.models.losses.orthogonality_loss`.
        include_unique (bool): also regularise the unique bases (official CIFAR-10 variant).
        log_max_error (bool): log ``orth_max_err`` (read off the Gram matrices the loss forms anyway, except for
            tall bases, more rows than columns, where it costs one product more per step).
        priority: hook priority.

    The backbone must provide ``basis_groups()`` (``SharedBasisBackboneMixin``); a model without shared
    bases (another backbone, or one switched to deploy mode) raises ``ValueError`` at the start of training.
    Bases whose parameters are all frozen (``frozen_stages``) are skipped.
    """

    def __init__(
        self,
        loss_weight: float = 10.0,
        pooling: str = 'paper',
        include_unique: bool = False,
        log_max_error: bool = True,
        priority='NORMAL',
    ) -> None:
        if (
            not isinstance(loss_weight, (int, float))
            or isinstance(loss_weight, bool)
            or not math.isfinite(loss_weight)
            or loss_weight < 0
        ):
            raise ValueError(f'loss_weight={loss_weight!r} is not allowed: it must be a finite number >= 0 (paper: 10)')
        if pooling not in POOLINGS:
            raise ValueError(f'pooling={pooling!r} is not allowed: choose one of {POOLINGS}')
        self.priority = priority
        self.loss_weight = float(loss_weight)
        self.pooling = pooling
        self.include_unique = bool(include_unique)
        self.log_max_error = bool(log_max_error)
        self._handle = None
        self._groups: List[BasisGroup] = []

    @property
    def groups(self) -> List[BasisGroup]:
        """The basis groups regularised (the trainable ones found at ``before_train``; empty before and after)."""
        return list(self._groups)

    @staticmethod
    def find_groups(model) -> List[BasisGroup]:
        """The basis groups of ``model.backbone`` (unwrapping DDP etc.), or a clear error."""
        inner = model.module if is_model_wrapper(model) else model
        backbone = getattr(inner, 'backbone', None)
        if backbone is None or not callable(getattr(backbone, 'basis_groups', None)):
            raise ValueError(
                f'OrthogonalityRegularizerHook needs a detector whose backbone has shared filter bases '
                f'(SharedBasisResNet, SharedBasisMobileNetV2, ...); got backbone '
                f'{type(backbone).__name__ if backbone is not None else None} of {type(inner).__name__}'
            )
        groups = backbone.basis_groups()
        if not groups:
            reason = ' (it was switched to deploy mode)' if getattr(backbone, 'deploy', False) else ''
            raise ValueError(
                f'OrthogonalityRegularizerHook: the backbone {type(backbone).__name__} has no shared '
                f'filter bases{reason}; remove the hook from custom_hooks or use shared bases'
            )
        return groups

    def before_train(self, runner) -> None:
        self._remove()  # a second train() on the same hook must not stack two forward hooks
        groups = self.find_groups(runner.model)
        self._groups = [g for g in groups if any(p.requires_grad for _, p in g.shared)]
        if not self._groups:
            print_log(
                'OrthogonalityRegularizerHook: every shared basis is frozen; loss_orth is not added',
                logger='current',
                level=30,
            )
            return
        inner = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._handle = inner.register_forward_hook(self._add_loss, with_kwargs=True)
        names = ', '.join(g.name for g in self._groups)
        print_log(
            f'OrthogonalityRegularizerHook: loss_weight={self.loss_weight}, pooling={self.pooling}, '
            f'include_unique={self.include_unique}; {len(self._groups)} basis groups: {names}',
            logger='current',
        )

    def loss_terms(self, groups: Optional[List[BasisGroup]] = None) -> Dict[str, Tensor]:
        """What the hook adds to the loss dict: ``loss_orth`` (``loss_weight * L_orth``, float32, differentiable)
        and, with ``log_max_error``, ``orth_max_err``; of ``groups`` (default: the groups found at
        ``before_train``). The benchmark times exactly this."""
        loss, max_err = orthogonality_loss(
            self._groups if groups is None else groups, self.pooling, self.include_unique, self.log_max_error
        )
        terms = {'loss_orth': loss * self.loss_weight}
        if self.log_max_error:
            terms['orth_max_err'] = max_err
        return terms

    def _add_loss(self, module, args, kwargs, output):
        if kwargs.get('mode') != 'loss' or not isinstance(output, dict):
            return output
        return {**output, **self.loss_terms()}

    def _remove(self) -> None:
        """Remove the forward hook and drop the references to the model's bases."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._groups = []

    def after_train(self, runner) -> None:
        self._remove()

    def after_run(self, runner) -> None:
        self._remove()
