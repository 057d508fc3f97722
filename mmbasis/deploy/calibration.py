"""Choose each factorised convolution's deploy form by measurement on the target device.

:meth:`FactorizedConv2d.fuse` has two exact forms: the basis and the 1x1 coefficients as two convolutions
(``'factorized'``, ``R (S k^2 + T)`` multiply-adds per output position) or one merged k x k convolution
(``'merged'``, ``S k^2 T``). Without calibration the form with fewer multiply-adds is built; but a convolution
with an odd number of channels (ranks such as 49 or 98) and two kernel launches can be slower than the merged
one on a given CPU or GPU although it computes less. :func:`calibrate_deploy_forms` times both forms of every
factorised convolution on the input size it sees in the backbone, and sets the faster one
(``forced_deploy_form``) for the next ``switch_to_deploy()``. The choice depends on the device, the threads
and the input size: calibrate where the model will run.
"""

import statistics
import time
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn


def _time(fn, x: Tensor, reps: int, warmup: int) -> List[float]:
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        out = []
        for _ in range(reps):
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            t0 = time.perf_counter()
            fn(x)
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            out.append(time.perf_counter() - t0)
    return out


def _is_factorized(module: nn.Module) -> bool:
    """A factorised convolution (``FactorizedConv2d``): it has a deploy form to choose."""
    return hasattr(module, 'forced_deploy_form') and hasattr(module, 'fuse')


def _input_shapes(backbone: nn.Module, example: Tensor) -> Dict[str, Tuple[int, ...]]:
    """The input shape of every factorised convolution in one eval-mode forward of ``example``."""
    shapes: Dict[str, Tuple[int, ...]] = {}

    def record(name: str):
        def hook(module, inputs, output) -> None:  # returns None: the output is left as it is
            shapes.setdefault(name, tuple(inputs[0].shape))

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in backbone.named_modules() if _is_factorized(m)]
    try:
        with torch.no_grad():
            backbone(example)
    finally:
        for h in handles:
            h.remove()
    return shapes


def calibrate_deploy_forms(
    backbone: nn.Module, example: Tensor, reps: int = 10, warmup: int = 2
) -> Dict[str, Dict[str, object]]:
    """Time both deploy forms of every factorised convolution of ``backbone`` and force the faster one.

    Args:
        backbone: a training-form mmbasis backbone (before ``switch_to_deploy``), put in eval mode.
        example: an input batch of the size the model will run at, on the target device.
        reps, warmup: timed and untimed calls per form (interleaved, medians compared).

    Returns:
        ``{module name: dict(form=..., merged_ms=..., factorized_ms=..., by_macs=...)}`` (empty when the
        backbone has no factorised convolution, e.g. ResNet50-Shared or the MobileNetV2s).
    """
    if reps < 1 or warmup < 0:
        raise ValueError(f'reps={reps}, warmup={warmup} are not allowed: reps >= 1 and warmup >= 0')
    if getattr(backbone, 'deploy', False):
        raise ValueError('the backbone is already in deploy form: calibrate before switch_to_deploy()')
    backbone.eval()
    shapes = _input_shapes(backbone, example)
    modules = dict(backbone.named_modules())
    choices: Dict[str, Dict[str, object]] = {}
    for name, shape in shapes.items():
        conv = modules[name]
        previous = conv.forced_deploy_form
        forms = {}
        for form in ('merged', 'factorized'):
            conv.forced_deploy_form = form
            forms[form] = conv.fuse()
        conv.forced_deploy_form = None
        by_macs = 'merged' if isinstance(conv.fuse(), nn.Conv2d) else 'factorized'
        conv.forced_deploy_form = previous
        x = torch.randn(shape, device=example.device, dtype=example.dtype)
        times = {form: [] for form in forms}
        for r in range(reps):  # interleaved, alternating order
            order = list(forms) if r % 2 == 0 else list(reversed(list(forms)))
            for form in order:
                times[form] += _time(forms[form], x, 1, warmup if r == 0 else 0)
        medians = {form: 1e3 * statistics.median(v) for form, v in times.items()}
        best = min(medians, key=medians.get)
        conv.forced_deploy_form = best
        choices[name] = dict(
            form=best, merged_ms=medians['merged'], factorized_ms=medians['factorized'], by_macs=by_macs
        )
    return choices


def format_choices(choices: Dict[str, Dict[str, object]]) -> str:
    """One line per convolution: the chosen form, both times, and where it differs from the multiply-add rule."""
    lines = []
    for name, c in choices.items():
        note = '' if c['form'] == c['by_macs'] else f' (multiply-adds would pick {c["by_macs"]})'
        lines.append(
            f'{name}: {c["form"]}{note}, merged {c["merged_ms"]:.3f} ms, factorized {c["factorized_ms"]:.3f} ms'
        )
    return '\n'.join(lines)
