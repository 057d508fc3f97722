"""The backbone benchmark: every paper model (or a backbone of one's own given by its config file, e.g. the
hardware-aligned variants) against the mmdet network it replaces, per mode (training step with the regulariser as
configured, eval, deploy, deploy with measured forms, onnxruntime; on request ``torch.compile`` and OpenVINO), plus
parameters, multiply-adds, ``state_dict`` sizes and the peak memory of a training step and of a deploy-form
inference (:func:`bench_pair`).
"""

import copy
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .timing import (
    Settings,
    macs,
    op_profile,
    param_bytes,
    peak_bytes,
    state_dict_bytes,
    summarize_times,
    time_interleaved,
)


def build_backbone(cfg: dict) -> nn.Module:
    """A backbone from its config dict (mmdet's registry, mmbasis registered), weights from a fixed seed (the
    modules' default initialisation: the values do not change the timings, and ``init_weights`` logs a line per
    tensor)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    return MODELS.build(dict(cfg, norm_eval=False))


def variant_label(cfg: dict) -> str:
    """A name for a backbone that is not a paper model: ``ResNet34-S47U1* (ours)`` for a ``SharedBasisResNet``
    with explicit ranks (``*``: one basis per convolution position, as the paper writes it), else its type."""
    if cfg.get('type') == 'SharedBasisResNet' and 'shared_rank' in cfg:
        star = '*' if cfg.get('basis_sharing') == 'conv' else ''
        return f'ResNet{cfg.get("depth", 50)}-S{cfg["shared_rank"]}U{cfg.get("unique_rank", 0)}{star} (ours)'
    return f'{cfg.get("type")} (ours)'


def backbone_from_file(path: str) -> dict:
    """The backbone a config file defines: its ``shared_backbone`` variable (the files of
    ``configs/_base_/backbones/``) or its ``model.backbone``; :class:`ValueError` naming the file otherwise."""
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    backbone = cfg.get('shared_backbone') or cfg.get('model', {}).get('backbone')
    if not backbone or 'type' not in backbone:
        raise ValueError(f'{path} defines no backbone: it needs a shared_backbone dict or model.backbone with a type')
    return dict(backbone.to_dict() if hasattr(backbone, 'to_dict') else backbone)


def resolve_model(name: str) -> Tuple[str, dict]:
    """``(label, explicit backbone config)`` of a paper model name or of a backbone config file (a shared-basis
    backbone: its plain counterpart is what it is measured against; :class:`ValueError` otherwise)."""
    from ..models.archs import MOBILENET, PAPER_MODEL_NAMES, RESNET, expand_arch, paper_backbone_cfg

    if name in PAPER_MODEL_NAMES:
        return name, paper_backbone_cfg(name)
    ours = expand_arch(backbone_from_file(name))
    if ours.get('type') not in (RESNET, MOBILENET):
        raise ValueError(
            f'its backbone is {ours.get("type")!r}, not a shared-basis one ({RESNET} or {MOBILENET}): there is '
            'nothing to measure it against'
        )
    return variant_label(ours), ours


def pairs_for(names: Sequence[str]) -> List[Tuple[str, dict, str, dict]]:
    """``(our label, our config, their label, their config)`` for each paper model name or backbone config file."""
    from ..models.archs import plain_counterpart

    out = []
    for model in names:
        name, ours = resolve_model(model)
        theirs = plain_counterpart(ours)
        label = 'ResNet-{}'.format(theirs['depth']) if theirs.get('type') == 'ResNet' else 'MobileNetV2 (plain)'
        out.append((name, ours, label, theirs))
        if ours['type'] == 'SharedBasisMobileNetV2':  # also mmdet's own MobileNetV2 (its default outputs)
            out.append((name, ours, "mmdet's MobileNetV2", dict(type='MobileNetV2')))
    return out


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

    from ..deploy.onnx import export_onnx, onnx_session

    with tempfile.TemporaryDirectory() as tmp:
        session = onnx_session(export_onnx(model, x.cpu(), os.path.join(tmp, 'model.onnx')), threads, spin=False)
    feed = {session.get_inputs()[0].name: x.cpu().numpy()}
    return lambda: session.run(None, feed)


def compiled_fn(model: nn.Module, x: torch.Tensor) -> Tuple[Callable[[], None], float]:
    """Inference of ``torch.compile(model)`` (inductor, default mode, static shapes) and the seconds its first call
    took (compilation included)."""
    import time

    model.eval()  # (mmdet's ResNet.train returns None: no chaining)
    compiled = torch.compile(model, dynamic=False)

    def run():
        with torch.no_grad():
            compiled(x)

    t0 = time.perf_counter()
    run()
    return run, time.perf_counter() - t0


def openvino_fn(model: nn.Module, x: torch.Tensor, threads: Optional[int]) -> Callable[[], None]:
    """Inference of ``model`` exported to ONNX (deploy form), compiled by OpenVINO for the CPU in float32."""
    import tempfile

    from ..deploy.onnx import export_onnx
    from ..deploy.runtime import openvino_model

    with tempfile.TemporaryDirectory() as tmp:
        compiled = openvino_model(export_onnx(model, x.cpu(), os.path.join(tmp, 'model.onnx')), threads)
    feed = [x.cpu().numpy()]
    return lambda: compiled(feed)


def peak_train_memory(model: nn.Module, x: torch.Tensor, device: torch.device, regulariser=(None, [])) -> float:
    """Peak bytes allocated during one training step (parameters and their gradients included)."""
    step = train_step_fn(model, x, regulariser)
    step()  # warm-up; then the gradients are released before the measured step, as zero_grad(set_to_none) does
    for p in model.parameters():
        p.grad = None
    return peak_bytes(step, device) + param_bytes(model)


def peak_infer_memory(model: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    """Peak bytes of one inference of ``model`` (eval mode, no autograd), its parameters and buffers included."""
    run = infer_fn(model, x)
    run()
    return peak_bytes(run, device) + param_bytes(model)


def deploy_copy(model: nn.Module, ours: bool, calibrate_on: Optional[torch.Tensor] = None) -> nn.Module:
    """A deploy-form copy: ours after ``switch_to_deploy()`` (forms calibrated on ``calibrate_on`` when given), theirs
    with its BatchNorms folded by mmcv's ``fuse_conv_bn``."""
    model = copy.deepcopy(model)
    model.eval()  # (mmdet's ResNet.train returns None, so no chaining)
    if ours:
        if calibrate_on is not None:
            from ..deploy import calibrate_deploy_forms

            calibrate_deploy_forms(model, calibrate_on)
        model.switch_to_deploy()
        return model
    from mmcv.cnn import fuse_conv_bn

    return fuse_conv_bn(model)


def bench_pair(
    ours_cfg: dict, theirs_cfg: dict, settings: Settings, device: torch.device
) -> Tuple[Dict[str, dict], Dict[str, dict]]:
    """Per-mode timings of one pair, and the static measures of both models."""
    x = torch.randn(settings.batch, 3, settings.size, settings.size, device=device)
    ours, theirs = build_backbone(ours_cfg).to(device), build_backbone(theirs_cfg).to(device)
    regs = {
        'ours': regulariser_for(ours, settings.regulariser),
        'theirs': regulariser_for(theirs, settings.regulariser),
    }
    static = {}
    for key, model, is_ours in (('ours', ours, True), ('theirs', theirs, False)):
        dep = deploy_copy(model, is_ours)
        static[key] = dict(
            params=sum(p.numel() for p in model.parameters()),
            gmacs=macs(model, x) / 1e9,
            deploy_gmacs=macs(dep, x) / 1e9,
            ckpt_mb=state_dict_bytes(model) / 2**20,
            deploy_ckpt_mb=state_dict_bytes(dep) / 2**20,
            peak_mb=peak_train_memory(model, x, device, regs[key]) / 2**20 if 'train' in settings.modes else math.nan,
            infer_peak_mb=peak_infer_memory(dep, x, device) / 2**20,
        )
    timings = {}
    for mode in settings.modes:
        if mode == 'train':  # the regulariser as configured, and (third) the regulariser alone, interleaved
            fns = [train_step_fn(ours, x, regs['ours']), train_step_fn(theirs, x, regs['theirs'])]
            if regs['ours'][0] is not None:
                fns.append(regulariser_step_fn(*regs['ours']))
            timings[mode] = summarize_times(*time_interleaved(fns, settings.reps, settings.warmup, device))
            continue
        if mode == 'eval':
            fns = [infer_fn(ours, x), infer_fn(theirs, x)]
        elif mode == 'deploy':
            fns = [infer_fn(deploy_copy(ours, True), x), infer_fn(deploy_copy(theirs, False), x)]
        elif mode == 'deploy-cal':
            fns = [infer_fn(deploy_copy(ours, True, calibrate_on=x), x), infer_fn(deploy_copy(theirs, False), x)]
        elif mode == 'compile':  # both deploy forms compiled alike; the compile times go into the notes
            (f_ours, s_ours), (f_theirs, s_theirs) = (
                compiled_fn(deploy_copy(ours, True), x),
                compiled_fn(deploy_copy(theirs, False), x),
            )
            t = summarize_times(*time_interleaved([f_ours, f_theirs], settings.reps, settings.warmup, device))
            timings[mode] = dict(t, ours_compile_s=s_ours, theirs_compile_s=s_theirs)
            continue
        elif mode == 'openvino':
            fns = [
                openvino_fn(deploy_copy(ours, True), x, settings.threads),
                openvino_fn(deploy_copy(theirs, False), x, settings.threads),
            ]
        else:
            fns = [
                onnx_fn(deploy_copy(ours, True), x, settings.threads),
                onnx_fn(deploy_copy(theirs, False), x, settings.threads),
            ]
        t_ours, t_theirs = time_interleaved(fns, settings.reps, settings.warmup, device)
        timings[mode] = summarize_times(t_ours, t_theirs)
    if settings.profile:
        for who, model in (('ours', ours), ('theirs', theirs)):
            static[who]['profile'] = op_profile(train_step_fn(model, x, regs[who]), settings.profile)
    return timings, static


def bench_backbones(
    models: Sequence[str], settings: Settings, device: torch.device, header: str = ''
) -> Tuple[List[dict], List[str], List[str], List[str]]:
    """Every pair of :func:`pairs_for` ``models`` in every mode, the table rows printed as they come: the CSV rows
    (timings and static measures), the timing table, the static table (each model once) and the profiles."""
    from . import report

    rows: List[dict] = []
    times_lines, static_lines, seen, profiles = report.times_header(), report.static_header(), set(), []
    for label, ours_cfg, their_label, theirs_cfg in pairs_for(models):
        timings, static = bench_pair(ours_cfg, theirs_cfg, settings, device)
        for mode, t in timings.items():
            times_lines.append(report.row_text(label, their_label, mode, t))
            print(times_lines[-1], flush=True)
            rows.append(dict(ours=label, theirs=their_label, mode=mode, **t, **report.static_columns(static)))
        for key, who in (('ours', label), ('theirs', their_label)):
            if 'profile' in static[key]:
                profiles.append(f'## training step of {who} ({header})\n\n{static[key].pop("profile")}')
                print(profiles[-1], flush=True)
            if who not in seen:
                seen.add(who)
                static_lines.append(report.static_row(who, static[key]))
    return rows, times_lines, static_lines, profiles
