"""Export a detector of ours (or only its backbone) to ONNX, in deploy form, and check it in onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG OUT.onnx [--checkpoint CKPT] [--shape H W]
        [--backbone-only] [--tolerance 1e-4] [--cfg-options k=v ...]

CKPT may be a training checkpoint (the usual, compact artefact: the backbone is folded after loading) or one
written by ``tools/model_converters/switch_to_deploy.py``; without it the config's initialisation is used.
The exported graph is mmdet's ``tensor`` mode (backbone, neck and head outputs, flattened: for SSD every
level's class scores, then every level's box deltas); decoding and NMS stay with mmdet. The export is written
atomically, then run in onnxruntime on a random input and compared with PyTorch: exit code 1 (and the file
removed) when the max relative error exceeds ``--tolerance``. Needs ``pip install -r requirements/onnx.txt``.
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
from mmbasis.apis.onnx_export import TensorNetwork, export_onnx, verify_onnx
from mmbasis.utils import CheckpointFormatError, load_weights_only, split_checkpoint
from mmbasis.utils.cli import read_config


def build_for_export(config: str, checkpoint: str = None, cfg_options: dict = None) -> torch.nn.Module:
    """The detector of ``config`` on CPU, ``checkpoint`` loaded strictly, its backbone in deploy form."""
    cfg = read_config(config, cfg_options)
    deploy_ckpt = False
    if checkpoint:
        _, meta = split_checkpoint(load_weights_only(checkpoint), checkpoint)
        deploy_ckpt = bool(meta.get('deploy'))
    model_cfg = copy.deepcopy(cfg.model)
    if deploy_ckpt:
        model_cfg.backbone.deploy = True
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
    if not deploy_ckpt and hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()
    return model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--checkpoint', help='training or deploy checkpoint of the config (default: none)')
    parser.add_argument(
        '--shape', nargs=2, type=int, default=[320, 320], metavar=('H', 'W'), help='input size (default 320 320)'
    )
    parser.add_argument('--backbone-only', action='store_true', help='export the backbone alone')
    parser.add_argument('--tolerance', type=float, default=1e-4, help='max relative error allowed (default 1e-4)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config):
        parser.error(f'no such config file: {args.config}')
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        parser.error(f'no such checkpoint: {args.checkpoint}')
    if not args.out.endswith('.onnx'):
        parser.error(f'OUT must end with .onnx, got {args.out!r}')
    if min(args.shape) < 32:
        parser.error(f'--shape must be at least 32 x 32, got {args.shape[0]} x {args.shape[1]}')
    if not args.tolerance > 0:
        parser.error(f'--tolerance must be positive, got {args.tolerance}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    MMLogger.get_instance('mmengine', log_level='WARNING')  # no line per initialised tensor
    shape = tuple(args.shape)
    try:
        model = build_for_export(args.config, args.checkpoint, args.cfg_options)
        net = TensorNetwork(model.backbone if args.backbone_only else model)
        torch.manual_seed(0)
        example = torch.randn(1, 3, *shape)
        export_onnx(net, example, args.out)
    except (FileNotFoundError, ImportError, ValueError, TypeError, CheckpointFormatError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    error = verify_onnx(args.out, net, example)
    what = 'backbone' if args.backbone_only else 'detector network (tensor mode)'
    print(f'wrote {args.out}: {what} of {args.config}, input 1x3x{shape[0]}x{shape[1]}')
    print(f'onnxruntime vs PyTorch: max relative error {error:.2e} (tolerance {args.tolerance:.0e})')
    if not error <= args.tolerance:
        os.remove(args.out)
        print(f'error: the exported graph differs from PyTorch by {error:.2e}; {args.out} removed', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
