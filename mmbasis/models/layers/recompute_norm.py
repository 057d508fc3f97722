"""BatchNorm over the basis responses followed by the 1x1 coefficients, with the normalised map recomputed in the
backward pass instead of stored (a memory saving of the factorised convolution, exact).

In training, ``coeff(basis_norm(y))`` stores two maps of ``R`` channels per factorised convolution for its
backward pass: ``y`` (the BatchNorm's input) and ``z = basis_norm(y)`` (the 1x1 convolution's input); a plain
convolution followed by its BatchNorm has no counterpart of ``z``, which is why the factorised layer uses more
training memory than the convolution it replaces. :class:`NormThenCoeff` stores only ``y`` and the BatchNorm's
batch statistics, and recomputes ``z`` in the backward pass with the same kernel and the same statistics, so the
forward output and the running statistics are those of the ordinary modules and the gradients equal theirs up to
float32 round-off (the recomputation does not touch the running statistics; the tests compare all of them). It
costs one elementwise pass over ``y`` in the backward pass.

Unlike ``torch.utils.checkpoint`` around the BatchNorm, which would run the module's forward twice and so update
its running statistics twice, this is exact. It applies to ``nn.BatchNorm2d`` in training mode; other norms, eval
mode and deploy mode use the ordinary modules.
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

aten = torch.ops.aten


class NormThenCoeff(torch.autograd.Function):
    """``conv2d(batch_norm(y), coeff_weight)`` (training-mode BatchNorm, 1x1 convolution without bias), storing
    ``y`` and the batch statistics only. Shapes: ``y (N, R, H, W)`` -> ``(N, T, H, W)``."""

    @staticmethod
    def forward(
        ctx,
        y: Tensor,
        norm_weight: Optional[Tensor],
        norm_bias: Optional[Tensor],
        running_mean: Optional[Tensor],
        running_var: Optional[Tensor],
        momentum: float,
        eps: float,
        coeff_weight: Tensor,
    ) -> Tensor:
        """BatchNorm with batch statistics (running statistics updated in place), then the 1x1 convolution;
        stores ``y`` and the statistics, not the normalised map."""
        z, save_mean, save_invstd = aten.native_batch_norm(
            y, norm_weight, norm_bias, running_mean, running_var, True, momentum, eps
        )
        ctx.eps = eps
        ctx.save_for_backward(y, norm_weight, norm_bias, coeff_weight, save_mean, save_invstd)
        return F.conv2d(z, coeff_weight)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        """Recompute the normalised map from ``y`` and the stored statistics, then the gradients of the 1x1
        convolution and of the BatchNorm with PyTorch's own backward kernels."""
        y, weight, bias, coeff_weight, save_mean, save_invstd = ctx.saved_tensors
        with torch.no_grad():
            # the same kernel on the same input gives the same z; no running statistics are passed, so none change
            z = aten.native_batch_norm(y, weight, bias, None, None, True, 0.0, ctx.eps)[0]
            grad_z = torch.nn.grad.conv2d_input(z.shape, coeff_weight, grad_out)
            grad_coeff = (
                torch.nn.grad.conv2d_weight(z, coeff_weight.shape, grad_out) if ctx.needs_input_grad[7] else None
            )
            del z
            grad_y, grad_w, grad_b = aten.native_batch_norm_backward(
                grad_z,
                y,
                weight,
                None,
                None,
                save_mean,
                save_invstd,
                True,
                ctx.eps,
                [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1], bias is not None],
            )
        return grad_y, grad_w, grad_b, None, None, None, None, grad_coeff


def applies(norm: nn.Module, coeff: nn.Conv2d) -> bool:
    """Whether :func:`norm_then_coeff` computes ``coeff(norm(y))`` for these modules now (training-mode
    ``nn.BatchNorm2d`` with batch statistics, a bias-free 1x1 convolution)."""
    return (
        type(norm) is nn.BatchNorm2d
        and norm.training
        and norm.track_running_stats
        and coeff.kernel_size == (1, 1)
        and coeff.bias is None
        and coeff.stride == (1, 1)
        and coeff.groups == 1
    )


def norm_then_coeff(norm: nn.BatchNorm2d, coeff: nn.Conv2d, y: Tensor) -> Tensor:
    """``coeff(norm(y))`` with ``norm(y)`` recomputed in the backward pass; updates ``norm``'s running statistics
    and ``num_batches_tracked`` exactly as ``norm.forward`` does (only when :func:`applies`)."""
    norm.num_batches_tracked.add_(1)
    momentum = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    return NormThenCoeff.apply(
        y, norm.weight, norm.bias, norm.running_mean, norm.running_var, momentum, norm.eps, coeff.weight
    )
