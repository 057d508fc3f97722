"""Speed, memory and size of the shared-basis backbones against the mmdet networks they replace.

    python tools/analysis_tools/benchmark_backbones.py [--models NAME ...] [--device cpu|cuda] [--batch 2]
        [--size 320] [--threads 2] [--reps 10] [--warmup 2] [--csv FILE]
    python tools/analysis_tools/benchmark_backbones.py [--detectors CONFIG ...]
        [--trained OURS_CONFIG OURS_CKPT PLAIN_CONFIG PLAIN_CKPT ...] [--iters 5] ...
    python tools/analysis_tools/benchmark_backbones.py --layers [--models NAME ...] ...

Backbone mode (default): every paper model (``mmbasis.paper_models``) is paired with its plain counterpart
(``plain_counterpart``: mmdet's ``ResNet`` of the same depth; for the MobileNetV2s, the official-layout plain
MobileNetV2 and mmdet's ``MobileNetV2``), both built in this process with ``norm_eval=False`` so that both run
BatchNorm in training mode. For each pair and each mode the two models are timed *interleaved* (ours, theirs,
theirs, ours, ...) after ``--warmup`` untimed calls, so that a load change on the machine hits both sides alike;
the table gives the medians and the ratio ours/theirs of the medians, with the range of the per-repetition
ratios in brackets. Modes:

* ``train``: one training step (forward, sum of the outputs, backward; gradients cleared between steps); ours
  with the orthogonality regulariser exactly as every config of ours enables it (``REGULARISER``: loss_weight 10,
  pooling ``paper``, ``orth_max_err`` logged), unless ``--no-regulariser``. The regulariser alone (its
  ``loss_orth`` forward and backward, what the hook adds to a step) is timed as a third function of the same
  interleaved run; the notes give its median and its share of ours' median step;
* ``eval``: inference in eval mode; ``deploy``: ours after ``switch_to_deploy()`` against theirs with its
  BatchNorms folded into the convolutions (mmcv's ``fuse_conv_bn``);
* ``deploy-cal``: as ``deploy``, ours with each factorised conv's form chosen by timing both at the benchmark's
  input size (``mmbasis.apis.calibrate_deploy_forms``) instead of by multiply-adds;
* ``onnx``: the two deploy forms exported to ONNX and run in onnxruntime (CPU; ``requirements/deploy.txt``).

Besides times, per model: parameters, multiply-adds (mmengine's ``FlopAnalyzer``; one fused multiply-add
counts once) at the benchmark's input size, the size of the saved ``state_dict`` (training form; deploy form
in brackets for ours) and the peak memory of a training step (CUDA: ``max_memory_allocated``; CPU: the peak of
the allocations the torch profiler records during the step, parameters included).

Detector mode (``--detectors`` and/or ``--trained``; ``bench_detectors.py`` builds the pairs), each detector of
ours against one that differs only in the backbone, ``--iters`` interleaved iterations:

* ``--detectors CONFIG``: untrained, the config against itself with the plain counterpart backbone, heads zeroed
  on both sides so that both do the same work after the backbone. ``det-train``: loss + backward on mmdet's
  ``demo_mm_inputs`` (``--batch`` images of ``--size``), ours with its config's regulariser hook, the regulariser
  alone timed in the same run; ``det-forward-zeroed``: the network (mmdet's ``tensor`` mode) at the configured
  proposal count. No inference mode: zeroed heads score every class alike, so no final NMS represents a trained
  detector's;
* ``--trained OURS_CONFIG OURS_CKPT PLAIN_CONFIG PLAIN_CKPT``: two trained twins on the first ``--batch``
  validation images of our config's dataset (its test pipeline decides the input size), so that RPN, RoI head
  and final NMS do their real work. ``det-forward``: ``tensor`` mode; ``det-infer``: ``predict`` with
  post-processing; the notes give the detections per image that pass the score threshold on each side.

Layer mode (``--layers``): where the time goes. For each distinct factorised convolution of the models (one per
stage of repeated blocks), a training step of basis -> BN -> coefficients -> BN against the plain k x k conv -> BN
it replaces, at the input size it sees inside the network, and the basis convolution alone at its rank ``R``
and at ``R`` rounded down to a multiple of 16, beside the plain convolution: CPU (oneDNN) and GPU convolution
kernels work on blocks of channels, so a rank just above a multiple of 16 (S48U1: 49) costs as much as the next
multiple.

The table goes to stdout; ``--csv`` also writes one row per model and mode. Timing is only meaningful on a
quiet machine: another job on the same cores changes a ratio by 30 % or more.
"""

import argparse
import copy
import csv
import io
import math
import os
import statistics
import sys
import time
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import DictAction
from torch import nn

MODES = ('train', 'eval', 'deploy', 'deploy-cal', 'onnx')


# ------------------------------------------------------------------------------------------------ building
def build_backbone(cfg: dict) -> nn.Module:
    """A backbone from its config dict (mmdet's registry, mmbasis registered), weights from a fixed seed (the
    modules' default initialisation: the values do not change the timings, and ``init_weights`` logs a line per
    tensor)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import mmbasis  # noqa: F401  (registers our modules)

    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    return MODELS.build(dict(cfg, norm_eval=False))


def pairs_for(names: Sequence[str]) -> List[Tuple[str, dict, str, dict]]:
    """``(our label, our config, their label, their config)`` for each paper model name."""
    from mmbasis.paper_models import paper_backbone_cfg, plain_counterpart

    out = []
    for name in names:
        ours = paper_backbone_cfg(name)
        theirs = plain_counterpart(ours)
        label = 'ResNet-{}'.format(theirs['depth']) if theirs.get('type') == 'ResNet' else 'MobileNetV2 (plain)'
        out.append((name, ours, label, theirs))
        if ours['type'] == 'SharedBasisMobileNetV2':  # also mmdet's own MobileNetV2 (its default outputs)
            out.append((name, ours, "mmdet's MobileNetV2", dict(type='MobileNetV2')))
    return out


# ------------------------------------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _outputs_sum(outputs) -> torch.Tensor:
    outs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    return sum(o.float().mean() for o in outs)


#: The regulariser as every config of ours enables it (``custom_hooks``); the backbone mode adds exactly this.
REGULARISER = dict(type='OrthogonalityRegularizerHook', loss_weight=10.0)


def regulariser_for(model: nn.Module, hook_cfg: Optional[dict] = REGULARISER):
    """``(hook, groups)``: the configured ``OrthogonalityRegularizerHook`` and ``model``'s basis groups (the
    trainable ones, as the hook takes them), or ``(None, [])`` for a model without shared bases or no ``hook_cfg``."""
    get_groups = getattr(model, 'basis_groups', None)
    if hook_cfg is None or not callable(get_groups):
        return None, []
    from mmdet.registry import HOOKS

    import mmbasis  # noqa: F401  (registers the hook)

    groups = [g for g in get_groups() if any(p.requires_grad for _, p in g.shared)]
    return (HOOKS.build(copy.deepcopy(hook_cfg)), groups) if groups else (None, [])


def regulariser_step_fn(hook, groups) -> Callable[[], None]:
    """The regulariser alone, as one training step pays for it: ``loss_orth`` (and the logged diagnostic) forward
    and backward into the bases' gradients."""
    params = [p for g in groups for _, p in (*g.shared, *g.unique)]

    def step():
        for p in params:
            p.grad = None
        hook.loss_terms(groups)['loss_orth'].backward()

    return step


def train_step_fn(model: nn.Module, x: torch.Tensor, regulariser=(None, [])) -> Callable[[], None]:
    """One training step: forward, sum of the outputs (plus the regulariser's ``loss_orth`` when ``regulariser`` =
    ``(hook, groups)`` of :func:`regulariser_for`), backward; gradients cleared first."""
    model.train()
    hook, groups = regulariser

    def step():
        for p in model.parameters():
            p.grad = None
        loss = _outputs_sum(model(x))
        if hook is not None:
            loss = loss + hook.loss_terms(groups)['loss_orth']
        loss.backward()

    return step


def infer_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def run():
        with torch.no_grad():
            model(x)

    return run


def onnx_fn(model: nn.Module, x: torch.Tensor, threads: Optional[int]) -> Callable[[], None]:
    """Inference of ``model`` exported to ONNX (deploy form), in an onnxruntime CPU session."""
    import tempfile

    from mmbasis.apis.onnx_export import export_onnx, onnx_session

    with tempfile.TemporaryDirectory() as tmp:
        session = onnx_session(export_onnx(model, x.cpu(), os.path.join(tmp, 'model.onnx')), threads)
    feed = {session.get_inputs()[0].name: x.cpu().numpy()}
    return lambda: session.run(None, feed)


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


def peak_train_memory(model: nn.Module, x: torch.Tensor, device: torch.device, regulariser=(None, [])) -> float:
    """Peak bytes allocated during one training step (parameters and their gradients included)."""
    step = train_step_fn(model, x, regulariser)
    step()  # warm-up; then the gradients are released before the measured step, as zero_grad(set_to_none) does
    for p in model.parameters():
        p.grad = None
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - base) + _param_bytes(model)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # the running sum of each op's own allocations minus frees, in the order the ops started (nothing allocated
    # before the step is freed during it, so the level starts at the parameters and buffers)
    level = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        level += e.self_cpu_memory_usage
        peak = max(peak, level)
    return float(peak) + _param_bytes(model)


def _param_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


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


def deploy_form(model: nn.Module, ours: bool, calibrate_on: Optional[torch.Tensor] = None) -> nn.Module:
    model = copy.deepcopy(model)
    model.eval()  # (mmdet's ResNet.train returns None, so no chaining)
    if ours:
        if calibrate_on is not None:
            from mmbasis.apis import calibrate_deploy_forms

            calibrate_deploy_forms(model, calibrate_on)
        model.switch_to_deploy()
        return model
    from mmcv.cnn import fuse_conv_bn

    return fuse_conv_bn(model)


def summarize_times(ours: List[float], theirs: List[float], reg: Optional[List[float]] = None) -> Dict[str, float]:
    """Medians (ms), ratio ours/theirs of the medians and the range of the per-repetition ratios; with ``reg`` (the
    regulariser alone, timed in the same interleaved run) also its median and its share of ours' median."""
    ratios = [a / b for a, b in zip(ours, theirs)]
    med_o, med_t = statistics.median(ours), statistics.median(theirs)
    out = dict(ours_ms=1e3 * med_o, theirs_ms=1e3 * med_t, ratio=med_o / med_t, lo=min(ratios), hi=max(ratios))
    if reg:
        out.update(reg_ms=1e3 * statistics.median(reg), reg_share=statistics.median(reg) / med_o)
    return out


def bench_pair(
    ours_cfg: dict, theirs_cfg: dict, args: argparse.Namespace, device: torch.device
) -> Tuple[Dict[str, dict], Dict[str, dict]]:
    """Per-mode timings of one pair, and the static measures of both models."""
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    ours, theirs = build_backbone(ours_cfg).to(device), build_backbone(theirs_cfg).to(device)
    regs = {'ours': regulariser_for(ours, args.regulariser), 'theirs': regulariser_for(theirs, args.regulariser)}
    static = {}
    for key, model, is_ours in (('ours', ours, True), ('theirs', theirs, False)):
        dep = deploy_form(model, is_ours)
        static[key] = dict(
            params=sum(p.numel() for p in model.parameters()),
            gmacs=macs(model, x) / 1e9,
            deploy_gmacs=macs(dep, x) / 1e9,
            ckpt_mb=state_dict_bytes(model) / 2**20,
            deploy_ckpt_mb=state_dict_bytes(dep) / 2**20,
            peak_mb=peak_train_memory(model, x, device, regs[key]) / 2**20 if 'train' in args.modes else math.nan,
        )
    timings = {}
    for mode in args.modes:
        if mode == 'train':  # the regulariser as configured, and (third) the regulariser alone, interleaved
            fns = [train_step_fn(ours, x, regs['ours']), train_step_fn(theirs, x, regs['theirs'])]
            if regs['ours'][0] is not None:
                fns.append(regulariser_step_fn(*regs['ours']))
            timings[mode] = summarize_times(*time_interleaved(fns, args.reps, args.warmup, device))
            continue
        if mode == 'eval':
            fns = [infer_fn(ours, x), infer_fn(theirs, x)]
        elif mode == 'deploy':
            fns = [infer_fn(deploy_form(ours, True), x), infer_fn(deploy_form(theirs, False), x)]
        elif mode == 'deploy-cal':
            fns = [infer_fn(deploy_form(ours, True, calibrate_on=x), x), infer_fn(deploy_form(theirs, False), x)]
        else:
            fns = [
                onnx_fn(deploy_form(ours, True), x, args.threads),
                onnx_fn(deploy_form(theirs, False), x, args.threads),
            ]
        t_ours, t_theirs = time_interleaved(fns, args.reps, args.warmup, device)
        timings[mode] = summarize_times(t_ours, t_theirs)
    if args.profile:
        for who, model in (('ours', ours), ('theirs', theirs)):
            static[who]['profile'] = op_profile(train_step_fn(model, x, regs[who]), args.profile)
    return timings, static


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


# ------------------------------------------------------------------------------------------------ layers
def factorized_geometries(cfg: dict, x: torch.Tensor) -> List[Tuple[str, object, Tuple[int, int]]]:
    """``(first layer name, FactorizedConv2d, input (H, W))`` for each distinct factorised-convolution geometry
    of the backbone ``cfg`` on an input like ``x``."""
    from mmbasis.models.layers import FactorizedConv2d

    model = build_backbone(cfg).eval()
    found: Dict[tuple, Tuple[str, object, Tuple[int, int]]] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, FactorizedConv2d):
            b = m.basis
            key = (m.in_channels, b.unique_rank, b.shared_rank, m.out_channels, b.kernel_size, b.stride)

            def hook(mod, inputs, out, key=key, name=name):
                found.setdefault(key, (name, mod, tuple(inputs[0].shape[-2:])))

            handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x[:1].cpu())
    for h in handles:
        h.remove()
    return list(found.values())


def bench_layers(name: str, cfg: dict, args: argparse.Namespace, device: torch.device) -> List[dict]:
    """Per distinct factorised convolution of ``name``: a training step (forward + backward) of basis -> BN ->
    coefficients -> BN against the plain k x k conv -> BN it replaces, and of the basis convolution alone at its
    rank ``R`` and at ``R`` rounded down to a multiple of 16 (what the rank would cost if convolution kernels did
    not work on blocks of channels), beside the plain convolution."""
    from mmbasis.models.layers import FactorizedConv2d

    x = torch.randn(args.batch, 3, args.size, args.size)
    rows = []
    for layer, m, (h, w) in factorized_geometries(cfg, x):
        b = m.basis
        geo = dict(stride=b.stride, padding=b.padding, dilation=b.dilation)
        r16 = max(16, b.rank // 16 * 16)
        torch.manual_seed(0)
        inp = torch.randn(args.batch, m.in_channels, h, w, device=device)
        shared = nn.Parameter(torch.randn(b.shared_rank, m.in_channels, *b.kernel_size)) if b.shared_rank else None
        ours = nn.Sequential(
            FactorizedConv2d(m.in_channels, m.out_channels, b.unique_rank, shared, kernel_size=b.kernel_size[0], **geo),
            nn.BatchNorm2d(m.out_channels),
        )
        if shared is not None:
            ours.register_parameter('shared_basis', shared)  # owned here, as a stage owns it
        plain = nn.Sequential(
            nn.Conv2d(m.in_channels, m.out_channels, b.kernel_size, bias=False, **geo), nn.BatchNorm2d(m.out_channels)
        )
        convs = [nn.Conv2d(m.in_channels, c, b.kernel_size, bias=False, **geo) for c in (b.rank, r16, m.out_channels)]
        models = [mod.to(device) for mod in (ours, plain, *convs)]
        fns = [train_step_fn(mod, inp) for mod in models]
        t = [statistics.median(v) * 1e3 for v in time_interleaved(fns, args.reps, args.warmup, device)]
        k2 = b.kernel_size[0] * b.kernel_size[1]
        rows.append(
            dict(
                model=name,
                layer=layer,
                geometry=f'{m.in_channels}->{b.rank}->{m.out_channels} k{b.kernel_size[0]} s{b.stride[0]} @{h}x{w}',
                mac_ratio=b.rank * (m.in_channels * k2 + m.out_channels) / (m.in_channels * k2 * m.out_channels),
                ours_ms=t[0],
                theirs_ms=t[1],
                ratio=t[0] / t[1],
                rank=b.rank,
                rank16=r16,
                basis_ms=t[2],
                basis16_ms=t[3],
                plain_conv_ms=t[4],
            )
        )
    return rows


def layer_table(rows: List[dict]) -> List[str]:
    lines = [
        '| model | first layer | S->R->T, kernel, stride @ input | MACs ours/plain | factorised+BN ms | '
        'conv+BN ms | ratio | basis conv at R ms | at R rounded down to 16 ms | plain conv ms |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        lines.append(
            f'| {r["model"]} | {r["layer"]} | {r["geometry"]} | {r["mac_ratio"]:.2f} | {r["ours_ms"]:.2f} | '
            f'{r["theirs_ms"]:.2f} | {r["ratio"]:.2f}x | {r["basis_ms"]:.2f} (R={r["rank"]}) | '
            f'{r["basis16_ms"]:.2f} (R={r["rank16"]}) | {r["plain_conv_ms"]:.2f} |'
        )
    return lines


# ------------------------------------------------------------------------------------------------ detectors
def _detector_module():
    """``bench_detectors.py`` beside this tool (the detector pairs and the functions timed in detector mode)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bench_detectors.py')
    spec = importlib.util.spec_from_file_location('mmbasis_bench_detectors', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_detectors(args: argparse.Namespace, device: torch.device) -> List[Tuple[str, str, str, dict]]:
    """``(ours, theirs, mode, timings and notes)`` for every ``--detectors`` config and ``--trained`` pair."""
    det = _detector_module()
    jobs = [(c, 'plain backbone', partial(det.untrained_fns, c, args.batch, args.size)) for c in args.detectors or ()]
    jobs += [(s[0], os.path.basename(s[2]), partial(det.trained_fns, s, args.batch)) for s in args.trained or ()]
    rows = []
    for config, theirs, build in jobs:
        try:
            modes = build(device=device, cfg_options=args.cfg_options)
        except det.BenchError as err:
            raise SystemExit(f'error: {err}') from None
        for mode, job in modes.items():
            t = summarize_times(*time_interleaved(job['fns'], args.iters, args.warmup, device))
            rows.append((os.path.basename(config), theirs, mode, {**t, **job['notes']}))
    return rows


# ------------------------------------------------------------------------------------------------ command line
def parse_args(argv=None) -> argparse.Namespace:
    from mmbasis.paper_models import PAPER_MODEL_NAMES

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=list(PAPER_MODEL_NAMES), metavar='NAME')
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES)
    parser.add_argument(
        '--detectors',
        nargs='+',
        metavar='CONFIG',
        help='detector mode, untrained: configs of ours against the same config with the plain backbone, heads '
        'zeroed on both sides (det-train with the configured regulariser, det-forward-zeroed)',
    )
    parser.add_argument(
        '--trained',
        nargs=4,
        action='append',
        metavar=('OURS_CONFIG', 'OURS_CKPT', 'PLAIN_CONFIG', 'PLAIN_CKPT'),
        help='detector mode, trained (repeatable): our trained detector against its trained plain twin (configs '
        "equal apart from the backbone) on --batch validation images of our config's dataset (det-forward, "
        'det-infer with the final NMS)',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='detector mode: overrides of every detector config (mmengine key=value syntax)',
    )
    parser.add_argument(
        '--no-regulariser',
        dest='regulariser',
        action='store_const',
        const=None,
        default=REGULARISER,
        help="backbone mode: time ours' training step without the orthogonality regulariser (default: with it, "
        'as every config of ours enables it: loss_weight 10, pooling paper)',
    )
    parser.add_argument(
        '--layers',
        action='store_true',
        help='layer mode: each distinct factorised convolution of --models against the plain convolution it '
        'replaces, and its basis convolution at rank R and at R rounded down to a multiple of 16',
    )
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N] (default cpu)')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=320, help='square input size (default 320)')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch chooses)')
    parser.add_argument('--reps', type=int, default=10, help='timed repetitions per model and mode (default 10)')
    parser.add_argument('--iters', type=int, default=5, help='timed iterations per detector and mode (default 5)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed calls first (default 2)')
    parser.add_argument('--csv', help='also write the rows to this CSV file')
    parser.add_argument(
        '--profile',
        type=int,
        default=0,
        metavar='ROWS',
        help="also print torch.profiler's top ROWS ops of each "
        'training step (ours and theirs; with --csv, also into a .profile.txt file beside it)',
    )
    parser.add_argument(
        '--readme',
        help='also write the tables, machine and command into this file between <!-- benchmark:start/end --> '
        '(detector mode: <!-- benchmark-detectors:start/end -->, layer mode: <!-- benchmark-layers:start/end -->)',
    )
    args = parser.parse_args(argv)
    from mmbasis.utils.misc import brief

    unknown = [m for m in args.models if m not in PAPER_MODEL_NAMES]
    if unknown:
        parser.error(f'--models: unknown paper model(s) {unknown}; allowed: {brief(PAPER_MODEL_NAMES)}')
    for name in ('batch', 'size', 'reps', 'iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1, got {getattr(args, name)}')
    for name in ('warmup', 'profile'):
        if getattr(args, name) < 0:
            parser.error(f'--{name} must be 0 or more, got {getattr(args, name)}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be at least 1, got {args.threads}')
    if 'onnx' in args.modes:
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            parser.error('--modes onnx needs the packages of requirements/deploy.txt (or leave onnx out of --modes)')
    if not (args.device == 'cpu' or args.device.startswith('cuda')):
        parser.error(f"--device must be 'cpu' or 'cuda[:N]', got {args.device!r}")
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: torch sees no CUDA device on this machine')
    args.detector_mode = bool(args.detectors or args.trained)
    if args.layers and args.detector_mode:
        parser.error('--layers and --detectors/--trained are separate modes: use one of them')
    for config in args.detectors or ():
        if not os.path.isfile(config):
            parser.error(f'--detectors: no such config file: {config}')
    for ours_cfg, ours_ckpt, plain_cfg, plain_ckpt in args.trained or ():
        for config in (ours_cfg, plain_cfg):
            if not os.path.isfile(config):
                parser.error(f'--trained: no such config file: {config}')
        for config, ckpt in ((ours_cfg, ours_ckpt), (plain_cfg, plain_ckpt)):
            if not os.path.isfile(ckpt):
                parser.error(
                    f'--trained: no such checkpoint: {ckpt} (the trained weights of {config}; train it first, e.g. '
                    f'python tools/train.py {config} --work-dir DIR, then give DIR/epoch_N.pth)'
                )
    return args


def _row_text(label: str, theirs: str, mode: str, t: dict) -> str:
    notes = []
    if 'reg_ms' in t:
        notes.append(f'regulariser {t["reg_ms"]:.1f} ms = {100 * t["reg_share"]:.1f} % of ours')
    if 'ours_dets' in t:
        thr = t['score_thr']
        notes.append(f'detections/image with score ≥ {thr:g}: ours {t["ours_dets"]:.1f}, theirs {t["theirs_dets"]:.1f}')
    return (
        f'| {label} | {theirs} | {mode} | {t["ours_ms"]:.1f} | {t["theirs_ms"]:.1f} | '
        f'{t["ratio"]:.2f}x [{t["lo"]:.2f}, {t["hi"]:.2f}] | {"; ".join(notes) or "-"} |'
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    reps = f'iterations {args.iters}' if args.detector_mode else f'reps {args.reps}'
    header = (
        f'device {device}, threads {torch.get_num_threads()}, batch {args.batch}, input {args.size}x{args.size}, '
        f'{reps}, warm-up {args.warmup}, torch {torch.__version__}, {time.strftime("%Y-%m-%d")}'
        + ("; --trained pairs: validation images at their test pipeline's size" if args.trained else '')
    )
    print(f'benchmark: {header}')
    rows: List[dict] = []
    times_lines = [
        '| ours | theirs | mode | ours ms | theirs ms | ratio [range] | notes |',
        '|---|---|---|---|---|---|---|',
    ]
    static_lines = [
        '| model | params (M) | GMACs | deploy GMACs | state_dict MB (deploy) | train peak MB |',
        '|---|---|---|---|---|---|',
    ]
    seen = set()
    profiles: List[str] = []
    if args.layers:
        for name in args.models:
            from mmbasis.paper_models import paper_backbone_cfg

            layer_rows = bench_layers(name, paper_backbone_cfg(name), args, device)
            if not layer_rows:
                print(f'{name}: no factorised convolutions (whole-convolution sharing): nothing to time')
            rows.extend(layer_rows)
            for line in layer_table(layer_rows)[2:]:
                print(line, flush=True)
        times_lines = layer_table(rows)
    elif args.detector_mode:
        for ours, theirs, mode, t in bench_detectors(args, device):
            times_lines.append(_row_text(ours, theirs, mode, t))
            rows.append(dict(ours=ours, theirs=theirs, mode=mode, **t))
            print(times_lines[-1], flush=True)
    else:
        for label, ours_cfg, their_label, theirs_cfg in pairs_for(args.models):
            timings, static = bench_pair(ours_cfg, theirs_cfg, args, device)
            for mode, t in timings.items():
                times_lines.append(_row_text(label, their_label, mode, t))
                print(times_lines[-1], flush=True)
            for key, who in (('ours', label), ('theirs', their_label)):
                if 'profile' in static[key]:
                    profiles.append(f'## training step of {who} ({header})\n\n{static[key].pop("profile")}')
                    print(profiles[-1], flush=True)
            for key, who in (('ours', label), ('theirs', their_label)):
                s = static[key]
                if who not in seen:
                    seen.add(who)
                    static_lines.append(
                        f'| {who} | {s["params"] / 1e6:.2f} | {s["gmacs"]:.3f} | {s["deploy_gmacs"]:.3f} | '
                        f'{s["ckpt_mb"]:.1f} ({s["deploy_ckpt_mb"]:.1f}) | {s["peak_mb"]:.0f} |'
                    )
            for mode, t in timings.items():
                rows.append(
                    dict(
                        ours=label,
                        theirs=their_label,
                        mode=mode,
                        **t,
                        ours_params=static['ours']['params'],
                        theirs_params=static['theirs']['params'],
                        ours_gmacs=static['ours']['gmacs'],
                        theirs_gmacs=static['theirs']['gmacs'],
                        ours_ckpt_mb=static['ours']['ckpt_mb'],
                        theirs_ckpt_mb=static['theirs']['ckpt_mb'],
                        ours_peak_mb=static['ours']['peak_mb'],
                        theirs_peak_mb=static['theirs']['peak_mb'],
                    )
                )
    report = '\n'.join(times_lines) + ('\n\n' + '\n'.join(static_lines) if len(static_lines) > 2 else '')
    print()
    print(report)
    if args.readme:
        from mmbasis.utils.misc import replace_marked_block

        command = 'python tools/analysis_tools/benchmark_backbones.py ' + ' '.join(
            repr(a) if ' ' in a or '*' in a else a for a in (argv if argv is not None else sys.argv[1:])
        )
        with open(args.readme, encoding='utf-8') as f:
            text = f.read()
        body = f'{header}\n\n{report}\n\n(generated by `{command}`)'
        marker = 'benchmark' + ('-detectors' if args.detector_mode else '-layers' if args.layers else '')
        text = replace_marked_block(text, marker, body, args.readme)
        with open(args.readme, 'w', encoding='utf-8') as f:
            f.write(text)
    if args.csv:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        tmp = args.csv + '.tmp'
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, args.csv)
        print(f'wrote {args.csv}')
        if profiles:
            path = os.path.splitext(args.csv)[0] + '.profile.txt'
            with open(path, 'w', encoding='utf-8') as f:
                f.write('\n\n'.join(profiles) + '\n')
            print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
