"""Convert an official Net_RL2 ImageNet checkpoint into an mmbasis backbone checkpoint.

    python tools/model_converters/netrl2_to_mmbasis.py SRC DST --arch NAME

SRC is a checkpoint of github.com/ssregibility/Net_RL2 (``{'net_state_dict': ...}`` as written by its
``train_ilsvrc.py``, keys possibly prefixed ``module.``) or a plain state dict. It is read with
``torch.load(weights_only=True)``, the classifier is dropped, keys are renamed to mmbasis' (see
:mod:`mmbasis.models.converters.netrl2`) and checked against the backbone ``paper_backbone_cfg(NAME)``.
DST (never SRC) is written atomically as ``dict(state_dict=..., meta=...)`` with keys relative to the
backbone. Use it as the backbone's own init config in a detector config::

    model = dict(
        backbone=dict(
            _delete_=True, type='SharedBasisResNet', depth=34, shared_rank=48, unique_rank=1,
            basis_sharing='conv',                       # = paper_backbone_cfg('ResNet34-S48U1*')
            init_cfg=dict(type='Pretrained', checkpoint='checkpoints/resnet34-s48u1x_mmbasis.pth')),
        neck=dict(in_channels=[64, 128, 256, 512]))

(no ``prefix``: the keys already belong to the backbone). Paper names (``--arch``): ResNet34-S{48,32,16}U1*,
ResNet34-S{48,32,16}U1, ResNet50-Shared, ResNet50-Shared++, ResNet101-Shared, MobileNetV2-Shared,
MobileNetV2-Shared++ (official code before March 2021) and MobileNetV2-Shared++-ECA (HEAD, with ECA).
"""
import argparse
import os.path as osp
import sys

import mmbasis  # noqa: F401  (registers the backbones)
from mmbasis.models.converters import (NETRL2_ARCHS, CheckpointFormatError, convert_netrl2_state_dict,
                                       load_netrl2_checkpoint, netrl2_checkpoint_meta, same_file, save_atomic)
from mmbasis.models.paper_models import paper_backbone_cfg


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official Net_RL2 checkpoint into an mmbasis backbone checkpoint',
        epilog='archs: ' + ', '.join(NETRL2_ARCHS))
    parser.add_argument('src', help='official checkpoint (.pth) to read; never modified')
    parser.add_argument('dst', help='output checkpoint (.pth); written atomically')
    parser.add_argument('--arch', required=True, metavar='NAME',
                        help='paper model name of SRC, e.g. "ResNet34-S48U1*" (quote the *)')
    args = parser.parse_args(argv)
    if args.arch not in NETRL2_ARCHS:
        parser.error(f'--arch {args.arch!r} is not known; choose one of: {", ".join(NETRL2_ARCHS)}')
    return args


def usage_snippet(arch: str, dst: str) -> str:
    """The detector-config lines that load ``dst`` into the backbone of ``arch``."""
    cfg = paper_backbone_cfg(arch)
    body = ', '.join(f'{k}={v!r}' for k, v in cfg.items())
    return (f"model = dict(backbone=dict(_delete_=True, {body},\n"
            f"                           init_cfg=dict(type='Pretrained', checkpoint={dst!r})))")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if osp.exists(args.src) and same_file(args.src, args.dst):
            raise ValueError(f'DST {args.dst!r} is the source checkpoint; choose another output path')
        state_dict, info = load_netrl2_checkpoint(args.src)
        converted = convert_netrl2_state_dict(state_dict, args.arch)
        meta = netrl2_checkpoint_meta(args.arch, osp.basename(args.src), info)
        save_atomic(dict(state_dict=converted, meta=meta), args.dst, protect=args.src)
    except (FileNotFoundError, CheckpointFormatError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    n_params = sum(v.numel() for k, v in converted.items() if v.is_floating_point() and 'running_' not in k)
    print(f'converted {args.src} ({NETRL2_ARCHS[args.arch]}) -> {args.dst}: {len(converted)} tensors, '
          f'{n_params:,} parameters (classifier dropped)')
    print('use it as the backbone init in a detector config:\n' + usage_snippet(args.arch, args.dst))
    return 0


if __name__ == '__main__':
    sys.exit(main())
