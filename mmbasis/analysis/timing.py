"""Timing, memory and size measurements of the benchmark: interleaved timing of functions, the peak memory of a
call and the bytes of a model, multiply-adds, checkpoint sizes, torch.profiler's heaviest ops.

Timing is only meaningful on a quiet machine: another job on the same cores changes a ratio by 30 % or more. Every
speed comparison here times both sides *interleaved* in one process (ours, theirs, theirs, ours, ...) after warm-up,
so that a load change hits both alike, and reports the ratio of the medians with the range of the per-repetition
ratios.
"""

import io
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

#: the modes of the backbone benchmark run by default
MODES = ('train', 'eval', 'deploy', 'deploy-cal', 'onnx')
#: further inference runtimes of the deploy forms, on request (``--modes``): ``torch.compile`` (inductor, both sides
#: compiled alike; the first call's compile time in the notes) and OpenVINO's CPU runtime (float32)
RUNTIME_MODES = ('compile', 'openvino')
ALL_MODES = MODES + RUNTIME_MODES


@dataclass
class Settings:
    """What a benchmark measures and how (the options of ``tools/analysis_tools/benchmark_backbones.py``).

    ``regulariser``: the ``OrthogonalityRegularizerHook`` config ours trains with (None: without it); ``profile``:
    torch.profiler rows per training step (0: none); ``iters``: interleaved iterations per detector and mode;
    ``cfg_options``: overrides of every detector config; ``end2end``: also the trained pairs deployed end to end
    (batch 1, eager, onnxruntime, OpenVINO).
    """

    modes: Tuple[str, ...] = MODES
    batch: int = 2
    size: int = 320
    reps: int = 10
    warmup: int = 2
    iters: int = 5
    threads: Optional[int] = None
    regulariser: Optional[dict] = None
    profile: int = 0
    cfg_options: Optional[dict] = None
    end2end: bool = False


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: Sequence[Callable[[], None]], reps: int, warmup: int, device: torch.device
) -> List[List[float]]:
    """Seconds per call of each function, ``reps`` times, interleaved with alternating order, after warm-up."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    _sync(device)
    times: List[List[float]] = [[] for _ in fns]
    for r in range(reps):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            _sync(device)
            t0 = time.perf_counter()
            fns[i]()
            _sync(device)
            times[i].append(time.perf_counter() - t0)
    return times


def state_dict_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def macs(model: nn.Module, x: torch.Tensor) -> float:
    from mmengine.analysis import FlopAnalyzer

    model.eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (x,))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return float(analyzer.total())


def summarize_times(ours: List[float], theirs: List[float], reg: Optional[List[float]] = None) -> Dict[str, float]:
    """Medians (ms), ratio ours/theirs of the medians and the range of the per-repetition ratios; with ``reg`` (the
    regulariser alone, timed in the same interleaved run) also its median and its share of ours' median."""
    ratios = [a / b for a, b in zip(ours, theirs)]
    med_o, med_t = statistics.median(ours), statistics.median(theirs)
    out = dict(ours_ms=1e3 * med_o, theirs_ms=1e3 * med_t, ratio=med_o / med_t, lo=min(ratios), hi=max(ratios))
    if reg:
        out.update(reg_ms=1e3 * statistics.median(reg), reg_share=statistics.median(reg) / med_o)
    return out


def op_profile(fn: Callable[[], None], rows: int) -> str:
    """torch.profiler's table of the ``rows`` (op, input shapes) pairs with the most self time over three calls of
    ``fn``: the shapes tell which convolution of which stage the time goes to."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(3):
            fn()
    return prof.key_averages(group_by_input_shape=True).table(
        sort_by='self_cpu_time_total', row_limit=rows, max_shapes_column_width=60
    )


def peak_bytes(fn: Callable[[], None], device: torch.device) -> float:
    """Peak bytes allocated during one call of ``fn`` above what was allocated before it."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # the running sum of each op's own allocations minus frees, in the order the ops started (nothing allocated
    # before the call is freed during it)
    level = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        level += e.self_cpu_memory_usage
        peak = max(peak, level)
    return float(peak)


def param_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
