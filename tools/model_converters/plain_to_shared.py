"""Warm start: decompose a plain pretrained ResNet checkpoint into a shared-basis backbone checkpoint.

    python tools/model_converters/plain_to_shared.py SRC DST --arch NAME
    python tools/model_converters/plain_to_shared.py SRC DST --backbone-config FILE_OR_JSON

SRC is a plain ResNet checkpoint in any of these layouts (detected from the keys, ``module.`` prefixes
allowed): an mmdet detector (``state_dict`` with ``backbone.*`` plus neck/heads), an mmpretrain/mmcls
classifier (``backbone.*`` plus ``head.*``), an mmdet/mmpretrain backbone (no prefix) or a torchvision
``state_dict`` (``conv1.weight``, ..., ``fc.*``). It is read with ``torch.load(weights_only=True)``.

The target is a paper ResNet model (``--arch 'ResNet34-S48U1*'``; quote the ``*``) or any
``SharedBasisResNet`` config (``--backbone-config``: a .py/.json file holding ``backbone = dict(...)`` or
``model = dict(backbone=...)``, or a JSON dict such as ``'{"type": "SharedBasisResNet", "depth": 18,
"shared_rank": 16, "unique_rank": 1}'``); its depth and widths must be those of SRC. Stem, first blocks and
shortcuts are copied; every stage basis is fitted to the convolutions of the repeated blocks that use it
(see :mod:`mmbasis.decompose`). The tool prints the relative approximation error of every decomposed
convolution (BN-scaled weights) and of every stage's output on a calibration batch (``--images DIR``:
images of a folder, resized; default: random inputs), which also calibrates the new BatchNorms.

DST (never SRC) is written atomically as ``dict(state_dict=..., meta=dict(report=..., backbone_cfg=...,
source=...))`` with keys relative to the backbone; use it as the backbone's own init config::

    model = dict(
        backbone=dict(
            _delete_=True, type='SharedBasisResNet', depth=34, shared_rank=48, unique_rank=1,
            basis_sharing='conv', rank_multipliers=(1, 2, 4, 8),      # = the target config
            init_cfg=dict(type='Pretrained', checkpoint='checkpoints/r34_s48u1x_from_plain.pth')),
        neck=dict(in_channels=[64, 128, 256, 512]))

Expect a large error for untrained weights; trained filters have faster-decaying spectra. Fine-tune after.
"""

import argparse
import json
import os.path as osp
import sys
from typing import List, Optional

import mmbasis  # noqa: F401  (registers the backbones, installs the checkpoint allowlist)
from mmbasis.decompose import decompose_checkpoint, format_report
from mmbasis.models.archs import PAPER_MODELS
from mmbasis.utils.checkpoint_io import CheckpointFormatError

RESNET_ARCHS = [n for n, m in PAPER_MODELS.items() if m.backbone.get('type') == 'SharedBasisResNet']


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Decompose a plain pretrained ResNet into shared filter bases (mmbasis backbone checkpoint)',
        epilog='paper archs: ' + ', '.join(RESNET_ARCHS),
    )
    parser.add_argument('src', help='plain ResNet checkpoint (.pth) to read; never modified')
    parser.add_argument('dst', help='output checkpoint (.pth); written atomically')
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument('--arch', metavar='NAME', help='paper model name of the target, e.g. "ResNet34-S48U1*"')
    target.add_argument(
        '--backbone-config',
        metavar='FILE_OR_JSON',
        help='SharedBasisResNet config: a .py/.json file (backbone = dict(...) or model.backbone) or a JSON dict',
    )
    parser.add_argument('--images', metavar='DIR', help='folder of calibration images (default: random inputs)')
    parser.add_argument('--num-images', type=int, default=8, help='calibration batch size (default 8)')
    parser.add_argument('--img-size', type=int, default=224, help='calibration image side (default 224)')
    parser.add_argument(
        '--als-iters',
        type=int,
        default=25,
        help='alternating refinement steps per basis; 0 = closed-form fits only (default 25)',
    )
    parser.add_argument('--seed', type=int, default=0, help='seed of the random calibration inputs')
    return parser.parse_args(argv)


def read_backbone_config(value: str) -> dict:
    """The backbone config of ``--backbone-config``: a .py/.json config file or a JSON dict."""
    if osp.isfile(value):
        if value.endswith('.json'):
            with open(value) as f:
                cfg = json.load(f)
        else:
            from mmengine.config import Config

            cfg = Config.fromfile(value).to_dict()
        if isinstance(cfg, dict) and 'type' not in cfg:
            cfg = cfg.get('backbone') or (cfg.get('model') or {}).get('backbone')
        if not isinstance(cfg, dict):
            raise ValueError(
                f'--backbone-config {value!r} holds no backbone config: give a file with '
                '`backbone = dict(...)` or `model = dict(backbone=...)`, or a JSON dict'
            )
        return cfg
    try:
        cfg = json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f'--backbone-config {value!r} is neither a file nor a JSON dict ({e})') from None
    if not isinstance(cfg, dict):
        raise ValueError(f'--backbone-config {value!r} is not a JSON dict')
    return cfg


def usage_snippet(cfg: dict, dst: str) -> str:
    """The detector-config lines that load ``dst`` into the backbone ``cfg``."""
    body = ', '.join(f'{k}={v!r}' for k, v in cfg.items())
    return (
        f'model = dict(backbone=dict(_delete_=True, {body},\n'
        f"                           init_cfg=dict(type='Pretrained', checkpoint={dst!r})))"
    )


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        cfg = None if args.arch is not None else read_backbone_config(args.backbone_config)
        meta = decompose_checkpoint(
            args.src,
            args.dst,
            arch=args.arch,
            backbone_cfg=cfg,
            images=args.images,
            num_images=args.num_images,
            img_size=args.img_size,
            als_iters=args.als_iters,
            seed=args.seed,
        )
    except (FileNotFoundError, CheckpointFormatError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(format_report(meta['report']))
    print(
        f'\ndecomposed {args.src} ({meta["source_layout"]}) -> {args.dst} '
        f'({"paper model " + args.arch if args.arch else meta["backbone_cfg"]["type"]})'
    )
    print('use it as the backbone init in a detector config:\n' + usage_snippet(meta['backbone_cfg'], args.dst))
    return 0


if __name__ == '__main__':
    sys.exit(main())
