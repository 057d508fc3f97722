"""Export a detector of ours to ONNX in deploy form and check it in onnxruntime and OpenVINO against PyTorch.

    python tools/deployment/pytorch2onnx.py CONFIG OUT.onnx [--checkpoint CKPT] [--shape H W] [--batch B]
        [--image IMG ...] [--runtimes onnxruntime openvino] [--iou 0.9] [--score-tol 1e-4]
        [--mode end2end | tensor | backbone] [--backbone-only] [--tolerance 1e-4] [--cfg-options k=v ...]

CKPT may be a training checkpoint (the usual, compact artefact: the backbone is folded after loading) or one
written by ``tools/model_converters/switch_to_deploy.py``; without it the config's initialisation is used.

``--mode end2end`` (default): the whole detector, decoding and NMS inside (``mmbasis.deploy.end2end``). Input
``image``: float32 ``(1, 3, H, W)``, BGR 0..255 (as mmdet loads images), the image scaled to fit H x W and padded
(default H W: the config's test scale); outputs ``boxes`` ``(K, 4)`` x1 y1 x2 y2 in input pixels, ``scores``
``(K,)``, ``labels`` ``(K,)``. With ``--batch B`` (B > 1) the graph takes ``(B, 3, H, W)`` and returns
``(B, K, 4)``, ``(B, K)``, ``(B, K)``, K = max_per_img, empty slots labelled -1 with score 0. The graph is run in
each runtime on B images (IMG ..., repeated to fill the batch; default: generated shapes images) and their
detections are matched, image by image, to mmdet's ``predict`` of the checkpoint in PyTorch (as loaded, before
folding): same label, IoU >= --iou, scores within --score-tol (``mmbasis.deploy.runtime``). ``--mode tensor``: mmdet's
``tensor`` mode of a single-stage detector (head outputs, no decoding); ``backbone`` (or ``--backbone-only``):
the backbone's feature maps; both compared with PyTorch on a random input (max relative error <= --tolerance).
The export is written atomically; exit code 1 (and the file removed) when a check fails. Needs
``pip install -r requirements/deploy.txt``.
"""

import argparse
import copy
import os
import sys

import torch
from mmdet.registry import MODELS
from mmengine.config import DictAction
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

import mmbasis  # noqa: F401  (registers modules, installs the checkpoint allowlist)
from mmbasis.datasets import draw_shapes_image
from mmbasis.deploy.end2end import End2EndDetector, default_input_shape
from mmbasis.deploy.onnx import ExportError, TensorNetwork, export_onnx, verify_onnx
from mmbasis.deploy.runtime import RUNTIMES, check_runtimes, image_steps, letterbox, load_image
from mmbasis.utils import CheckpointFormatError, load_weights_only, split_checkpoint
from mmbasis.utils.cli import read_config

MODES = ('end2end', 'tensor', 'backbone')


def build_for_export(config: str, checkpoint: str = None, cfg_options: dict = None, fold: bool = True):
    """The detector of ``config`` on CPU in eval mode, ``checkpoint`` loaded strictly, its backbone in deploy form
    (``fold=False``: as loaded, the training form for a training checkpoint)."""
    cfg = read_config(config, cfg_options)
    deploy_ckpt = False
    if checkpoint:
        _, meta = split_checkpoint(load_weights_only(checkpoint), checkpoint)
        deploy_ckpt = bool(meta.get('deploy'))
    model_cfg = copy.deepcopy(cfg.model)
    if deploy_ckpt:
        model_cfg.backbone.deploy = True
        if meta.get('deploy_forms'):
            model_cfg.backbone.deploy_forms = dict(meta['deploy_forms'])
    if checkpoint:  # the checkpoint replaces any pretrained backbone weights
        model_cfg.backbone.pop('init_cfg', None)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True, revise_keys=[])
    else:
        model.init_weights()
    model.eval()
    if fold and not deploy_ckpt and hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()
    return model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--checkpoint', help='training or deploy checkpoint of the config (default: none)')
    parser.add_argument('--shape', nargs=2, type=int, metavar=('H', 'W'), help="input size (default: the config's)")
    parser.add_argument('--mode', choices=MODES, default='end2end', help='what to export (default end2end)')
    parser.add_argument('--backbone-only', action='store_true', help='the same as --mode backbone')
    parser.add_argument('--batch', type=int, default=1, help='end2end: images per call of the graph (default 1)')
    parser.add_argument('--image', nargs='+', help='end2end: the images to check on (default: generated shapes images)')
    parser.add_argument('--runtimes', nargs='+', choices=RUNTIMES, default=list(RUNTIMES), help='end2end: runtimes')
    parser.add_argument('--iou', type=float, default=0.9, help='end2end: min IoU of matched boxes (default 0.9)')
    parser.add_argument('--score-tol', type=float, default=1e-4, help='end2end: max |score diff| (default 1e-4)')
    parser.add_argument('--tolerance', type=float, default=1e-4, help='tensor/backbone: max relative error')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args(argv)
    if args.backbone_only:
        args.mode = 'backbone'
    if not os.path.isfile(args.config):
        parser.error(f'no such config file: {args.config}')
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        parser.error(f'no such checkpoint: {args.checkpoint}')
    for path in args.image or []:
        if not os.path.isfile(path):
            parser.error(f'no such image: {path}')
    if args.batch < 1:
        parser.error(f'--batch must be a positive integer, got {args.batch}')
    if args.batch > 1 and args.mode != 'end2end':
        parser.error(f'--batch {args.batch} is for --mode end2end; --mode {args.mode} exports one image')
    if not args.out.endswith('.onnx'):
        parser.error(f'OUT must end with .onnx, got {args.out!r}')
    if args.shape and min(args.shape) < 32:
        parser.error(f'--shape must be at least 32 x 32, got {args.shape[0]} x {args.shape[1]}')
    if not args.tolerance > 0:
        parser.error(f'--tolerance must be positive, got {args.tolerance}')
    if not 0 < args.iou <= 1:
        parser.error(f'--iou must be in (0, 1], got {args.iou}')
    if not args.score_tol >= 0:
        parser.error(f'--score-tol must be >= 0, got {args.score_tol}')
    return args


def check_end2end(args, net: End2EndDetector, shape) -> bool:
    """Run the exported graph in every runtime on the images and match their detections to PyTorch's."""
    if args.image:
        paths = [args.image[i % len(args.image)] for i in range(args.batch)]
        steps = image_steps(read_config(args.config, args.cfg_options))
        if steps:
            print(f'the graph expects images after {", ".join(type(t).__name__ for t in steps)} (the test pipeline)')
        image = torch.cat([load_image(p, shape, steps)[0] for p in paths])
        what = ', '.join(paths)
    else:
        image = torch.cat([letterbox(draw_shapes_image(seed=s, size=max(shape)), shape)[0] for s in range(args.batch)])
        what = (
            f'generated shapes images (seeds 0-{args.batch - 1})'
            if args.batch > 1
            else 'a generated shapes image (seed 0)'
        )
    reference_model = build_for_export(args.config, args.checkpoint, args.cfg_options, fold=False)
    reference, reports = check_runtimes(
        args.out, reference_model, net.test_cfg, image, args.runtimes, args.iou, args.score_tol
    )
    found = sum(len(r[1]) for r in reference)
    print(f'checked on {what}: PyTorch (mmdet predict) found {found} detections')
    for runtime, report in reports.items():
        print(f'  {runtime:<12} {"OK  " if report.ok else "FAIL"} {report.summary()}')
    return all(report.ok for report in reports.values())


def main(argv=None) -> int:
    args = parse_args(argv)
    MMLogger.get_instance('mmengine', log_level='WARNING')  # no line per initialised tensor
    try:
        model = build_for_export(args.config, args.checkpoint, args.cfg_options)
        shape = tuple(args.shape) if args.shape else default_input_shape(read_config(args.config, args.cfg_options))
        if args.mode == 'end2end':
            net = End2EndDetector(model, shape, args.batch)
            example = torch.zeros(args.batch, 3, *shape)
        else:
            net = TensorNetwork(model.backbone if args.mode == 'backbone' else model)
            example = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
        export_onnx(net, example, args.out)
        what = dict(end2end='end-to-end detector', tensor='detector network (tensor mode)', backbone='backbone')
        print(f'wrote {args.out}: {what[args.mode]} of {args.config}, input {len(example)}x3x{shape[0]}x{shape[1]}')
        if args.mode == 'end2end':
            ok = check_end2end(args, net, shape)
        else:
            error = verify_onnx(args.out, net, example)
            print(f'onnxruntime vs PyTorch: max relative error {error:.2e} (tolerance {args.tolerance:.0e})')
            ok = error <= args.tolerance
    except (FileNotFoundError, ImportError, ValueError, TypeError, CheckpointFormatError, ExportError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    if not ok:
        os.remove(args.out)
        print(f'error: the exported graph does not compute what PyTorch does; {args.out} removed', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
