"""Whole detectors in the benchmark: the detector pairs and the functions that are timed (:func:`bench_detectors`).

Two kinds of pair, each ours against a detector that differs only in the backbone:

* **untrained** (``--detectors CONFIG``): our config and the same config with the plain counterpart backbone
  (``init_cfg`` dropped), both from a fixed seed, on mmdet's ``demo_mm_inputs``. Untrained detectors would hand
  NMS and RoIAlign different amounts of work (their proposals follow their random scores), which swamps the
  backbone difference; so every head parameter is zeroed on both sides (same anchors, same scores: the same work
  after the backbone, the heads' arithmetic unchanged) and the RPN's proposal NMS keeps every proposal up to the
  configured count. Modes: ``det-train`` (loss + backward, with the config's ``OrthogonalityRegularizerHook`` on
  ours exactly as configured; the regulariser alone is timed in the same run) and ``det-forward-zeroed`` (the
  network in mmdet's ``tensor`` mode at the configured proposal count, no final post-processing). Zeroed heads
  score every class alike, so the final NMS of such a pair does no representative work: no inference mode here.
* **trained** (``--trained OURS_CONFIG OURS_CKPT PLAIN_CONFIG PLAIN_CKPT``): two trained detectors, their configs
  equal apart from the backbone, on the first ``batch`` validation images of our config's dataset through its
  test pipeline, so that the RPN, the RoI head and the final NMS do their real work. Modes: ``det-forward``
  (``tensor`` mode) and ``det-infer`` (``predict``, with post-processing); the detections per image that pass
  the score threshold are counted on both sides.
"""

import copy
import os
from functools import partial
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .timing import Settings, param_bytes, peak_bytes, summarize_times, time_interleaved

REG_HOOK = 'OrthogonalityRegularizerHook'
UNTRAINED_MODES = ('det-train', 'det-forward-zeroed')
TRAINED_MODES = ('det-forward', 'det-infer')
END2END_MODES = ('e2e-eager', 'e2e-compile', 'e2e-onnxruntime', 'e2e-openvino')


class BenchError(ValueError):
    """A detector pair that cannot be timed (message for the user)."""


def _read(config: str, cfg_options: Optional[dict]):
    from mmdet.utils import register_all_modules
    from mmengine.registry import init_default_scope

    from ..utils.cli import read_config

    register_all_modules(init_default_scope=False)
    cfg = read_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return cfg


def _loss_step(model: nn.Module, data: dict):
    """One training iteration as mmengine's ``train_step`` does it, without the optimizer step: forward in ``loss``
    mode (forward hooks, e.g. the regulariser's, run), ``parse_losses``, backward."""

    def step():
        model.train()
        for p in model.parameters():
            p.grad = None
        loss, _ = model.parse_losses(model(data['inputs'], data['data_samples'], mode='loss'))
        loss.backward()

    return step


def _regulariser(cfg, model: nn.Module):
    """The config's regulariser hook attached to ``model`` as the runner would (``before_train``), or None."""
    from mmdet.registry import HOOKS

    hook_cfgs = [h for h in cfg.get('custom_hooks', []) if h.get('type') == REG_HOOK]
    if not hook_cfgs:
        return None
    hook = HOOKS.build(copy.deepcopy(dict(hook_cfgs[0])))
    hook.before_train(SimpleNamespace(model=model))
    return hook if hook.groups else None


def _regulariser_alone(hook) -> Callable[[], None]:
    params = [p for g in hook.groups for _, p in (*g.shared, *g.unique)]

    def step():
        for p in params:
            p.grad = None
        hook.loss_terms()['loss_orth'].backward()

    return step


def zeroed_pair(config: str, cfg_options: Optional[dict] = None):
    """``([ours, plain], cfg)``: our untrained detector of ``config`` and the same with the plain counterpart
    backbone, heads zeroed, the RPN's proposal NMS keeping every proposal (IoU threshold 1.0) on both sides."""
    from mmdet.registry import MODELS

    from ..models.archs import plain_counterpart

    cfg = _read(config, cfg_options)
    for stage in ('train_cfg', 'test_cfg'):
        for key in ('rpn_proposal', 'rpn'):
            nms = (cfg.model.get(stage) or {}).get(key, {}).get('nms')
            if isinstance(nms, dict):
                nms['iou_threshold'] = 1.0
    models = []
    for backbone in (cfg.model.backbone, plain_counterpart(cfg.model.backbone)):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone = {k: v for k, v in dict(backbone).items() if k != 'init_cfg'}
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
        for name in ('rpn_head', 'roi_head', 'bbox_head'):
            head = getattr(model, name, None)
            if head is not None:
                for p in head.parameters():
                    nn.init.zeros_(p)
        models.append(model)
    return models, cfg


def untrained_fns(
    config: str, batch: int, size: int, device: torch.device, cfg_options: Optional[dict] = None
) -> Dict[str, dict]:
    """``{mode: dict(fns=[ours, theirs(, our regulariser alone)], notes={})}`` for :data:`UNTRAINED_MODES`."""
    from mmdet.testing import demo_mm_inputs

    (ours, theirs), cfg = zeroed_pair(config, cfg_options)
    torch.manual_seed(0)
    packed = demo_mm_inputs(
        batch_size=batch, image_shapes=[(3, size, size)] * batch, num_classes=_num_classes(cfg.model)
    )
    out = {mode: dict(fns=[], notes={}) for mode in UNTRAINED_MODES}
    for model in (ours, theirs):
        model.to(device)
        data, data_eval = model.data_preprocessor(packed, True), model.data_preprocessor(packed, False)
        out['det-train']['fns'].append(_loss_step(model, data))
        out['det-forward-zeroed']['fns'].append(_forward(model, data_eval))
    hook = _regulariser(cfg, ours)
    if hook is not None:
        out['det-train']['fns'].append(_regulariser_alone(hook))
    return out


def _forward(model: nn.Module, data: dict):
    def run():
        model.eval()
        with torch.no_grad():
            model(data['inputs'], data['data_samples'], mode='tensor')

    return run


def _predict(model: nn.Module, data: dict):
    def run():
        model.eval()
        with torch.no_grad():
            return model(data['inputs'], data['data_samples'], mode='predict')

    return run


def _without_backbone(model_cfg) -> dict:
    return {k: v for k, v in model_cfg.to_dict().items() if k != 'backbone'}


def trained_pair(spec: List[str], cfg_options: Optional[dict] = None) -> Tuple[List[nn.Module], object]:
    """``([ours, plain], our cfg)`` from ``spec`` = ``[ours config, ours checkpoint, plain config, plain
    checkpoint]``, checkpoints loaded strictly; :class:`BenchError` when the configs differ in more than the
    backbone or a checkpoint does not fit its detector."""
    from mmdet.registry import MODELS
    from mmengine.runner import load_checkpoint

    ours_config, ours_ckpt, plain_config, plain_ckpt = spec
    cfgs = [_read(ours_config, cfg_options), _read(plain_config, cfg_options)]
    a, b = (_without_backbone(c.model) for c in cfgs)
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if differ:
        raise BenchError(
            f'--trained: {ours_config} and {plain_config} are not twins: their models differ in {differ}, not only '
            'in the backbone'
        )
    models = []
    for cfg, config, ckpt in ((cfgs[0], ours_config, ours_ckpt), (cfgs[1], plain_config, plain_ckpt)):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone.pop('init_cfg', None)  # the checkpoint holds every weight
        model = MODELS.build(model_cfg)
        try:
            load_checkpoint(model, ckpt, map_location='cpu', strict=True, logger='silent')
        except (RuntimeError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BenchError(f'--trained: {ckpt} does not fit the detector of {config}: {first}') from None
        models.append(model.eval())
    return models, cfgs[0]


def validation_batch(cfg, batch: int) -> dict:
    """The first ``batch`` images of ``cfg``'s validation dataset through its pipeline, collated."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate

    dataset = DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
    if len(dataset) < batch:
        raise BenchError(f'--batch {batch}: the validation split of the config has only {len(dataset)} images')
    return pseudo_collate([dataset[i] for i in range(batch)])


def score_threshold(model_cfg) -> Optional[float]:
    test_cfg = model_cfg.get('test_cfg') or {}
    for part in (test_cfg.get('rcnn') or {}, test_cfg):
        if 'score_thr' in part:
            return float(part['score_thr'])
    return None


def trained_fns(
    spec: List[str], batch: int, device: torch.device, cfg_options: Optional[dict] = None
) -> Dict[str, dict]:
    """``{mode: dict(fns=[ours, theirs], notes)}`` for :data:`TRAINED_MODES`; the notes of ``det-infer`` hold the
    detections per image (mean over the batch) of each side and the score threshold they passed."""
    (ours, theirs), cfg = trained_pair(spec, cfg_options)
    packed = validation_batch(cfg, batch)
    out = {mode: dict(fns=[], notes={}) for mode in TRAINED_MODES}
    counts = []
    for model in (ours, theirs):
        model.to(device)
        data = model.data_preprocessor(packed, False)
        out['det-forward']['fns'].append(_forward(model, data))
        predict = _predict(model, data)
        out['det-infer']['fns'].append(predict)
        counts.append(sum(len(s.pred_instances) for s in predict()) / batch)
    out['det-infer']['notes'] = dict(ours_dets=counts[0], theirs_dets=counts[1], score_thr=score_threshold(cfg.model))
    return out


def _folded(model: nn.Module) -> nn.Module:
    """A copy of a trained detector with its backbone in deploy form: ours ``switch_to_deploy()``, a plain one with
    its BatchNorms folded by mmcv's ``fuse_conv_bn`` (as the backbone benchmark's deploy mode)."""
    from mmcv.cnn import fuse_conv_bn

    model = copy.deepcopy(model).eval()
    if hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()
    else:
        model.backbone = fuse_conv_bn(model.backbone)
    return model


def end2end_fns(
    spec: List[str], threads: Optional[int], batch: int, device: torch.device, cfg_options: Optional[dict] = None
) -> Dict[str, dict]:
    """``{mode: dict(fns=[ours, theirs], notes)}`` for :data:`END2END_MODES`: the trained twins as deployed end to
    end (:class:`~mmbasis.deploy.end2end.End2EndDetector` for ``batch`` images: images in, boxes, scores and labels
    out, decoding and NMS inside, backbones folded) in PyTorch eager, ``torch.compile`` (both sides compiled alike:
    inductor, static shapes; the final selection of detections is a graph break), onnxruntime and OpenVINO (CPU,
    float32), on the first ``batch`` validation images of our config letterboxed to the config's test size. Notes:
    detections per image of each side (eager), the peak memory of one eager inference (parameters included) and
    the seconds of each side's first compiled call (compilation included)."""
    import tempfile

    from ..deploy.end2end import End2EndDetector, default_input_shape
    from ..deploy.onnx import export_onnx, onnx_session
    from ..deploy.runtime import load_image, openvino_model
    from .backbones import compiled_fn

    if device.type != 'cpu':
        raise BenchError(f'--end2end runs the CPU runtimes; --device {device} is not allowed with it')
    (ours, theirs), cfg = trained_pair(spec, cfg_options)
    shape = default_input_shape(cfg)
    paths = [s.img_path for s in validation_batch(cfg, batch)['data_samples']]
    image = torch.cat([load_image(p, shape)[0] for p in paths])
    out = {mode: dict(fns=[], notes={}) for mode in END2END_MODES}
    counts, peaks, compile_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, model in enumerate((ours, theirs)):
            net = End2EndDetector(_folded(model), shape, batch).eval()

            def eager(net=net):
                with torch.no_grad():
                    return net(image)

            _, scores, labels = eager()
            counts.append(len(scores) if batch == 1 else float((labels >= 0).sum()) / batch)
            peaks.append((peak_bytes(eager, device) + param_bytes(net)) / 2**20)
            run, seconds = compiled_fn(net, image)
            compile_s.append(seconds)
            onnx_path = export_onnx(net, image, f'{tmp}/{i}.onnx')
            session, compiled = onnx_session(onnx_path, threads, spin=False), openvino_model(onnx_path, threads)
            feed = image.numpy()
            out['e2e-eager']['fns'].append(eager)
            out['e2e-compile']['fns'].append(run)
            out['e2e-onnxruntime']['fns'].append(lambda s=session, f=feed: s.run(None, {s.get_inputs()[0].name: f}))
            out['e2e-openvino']['fns'].append(lambda c=compiled, f=feed: c([f]))
    out['e2e-eager']['notes'] = dict(
        ours_dets=counts[0],
        theirs_dets=counts[1],
        score_thr=score_threshold(cfg.model),
        ours_peak_mb=peaks[0],
        theirs_peak_mb=peaks[1],
        input=f'{batch}x{shape[0]}x{shape[1]}',
    )
    out['e2e-compile']['notes'] = dict(ours_compile_s=compile_s[0], theirs_compile_s=compile_s[1])
    for mode in END2END_MODES:  # throughput: images per second of each side
        out[mode]['notes']['images'] = batch
    return out


def _num_classes(model_cfg) -> int:
    for key in ('roi_head', 'bbox_head'):
        head = model_cfg.get(key)
        if head is None:
            continue
        head = head.get('bbox_head', head)
        if isinstance(head, dict) and 'num_classes' in head:
            return int(head['num_classes'])
    return 80


def bench_detectors(
    detectors: Sequence[str], trained: Sequence[Sequence[str]], settings: Settings, device: torch.device
) -> List[Tuple[str, str, str, dict]]:
    """``(ours, theirs, mode, timings and notes)`` for every ``--detectors`` config and ``--trained`` pair."""
    jobs = [(c, 'plain backbone', partial(untrained_fns, c, settings.batch, settings.size)) for c in detectors]
    jobs += [(s[0], os.path.basename(s[2]), partial(trained_fns, s, settings.batch)) for s in trained]
    if settings.end2end:
        jobs += [
            (s[0], os.path.basename(s[2]), partial(end2end_fns, s, settings.threads, settings.batch)) for s in trained
        ]
    rows = []
    for config, theirs, build in jobs:
        modes = build(device=device, cfg_options=settings.cfg_options)
        for mode, job in modes.items():
            t = summarize_times(*time_interleaved(job['fns'], settings.iters, settings.warmup, device))
            rows.append((os.path.basename(config), theirs, mode, {**t, **job['notes']}))
    return rows
