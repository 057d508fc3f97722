"""Convert an official Net_RL2 ImageNet checkpoint into an mmbasis backbone checkpoint.

    python tools/model_converters/netrl2_to_mmbasis.py SRC DST --arch NAME

SRC is a checkpoint of github.com/ssregibility/Net_RL2 (``{'net_state_dict': ...}`` as written by its
``train_ilsvrc.py``) or a plain state dict; DST (never SRC) is written atomically as ``dict(state_dict=...,
meta=...)`` with keys relative to the backbone. The conversion, its key mapping and the archs it knows are
:mod:`mmbasis.models.netrl2`.
"""

import argparse
import os.path as osp
import sys

import mmbasis  # noqa: F401  (registers the backbones)
from mmbasis.models.archs import paper_backbone_cfg
from mmbasis.models.netrl2 import (  # noqa: F401  (importable from here as before)
    NETRL2_ARCHS,
    NetRL2ConversionError,
    convert_netrl2_state_dict,
    expected_shapes,
    extract_netrl2_state_dict,
    guess_netrl2_arch,
    load_netrl2_checkpoint,
    netrl2_checkpoint_meta,
)
from mmbasis.utils import CheckpointFormatError, same_file, save_atomic


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official Net_RL2 checkpoint into an mmbasis backbone checkpoint',
        epilog='archs: ' + ', '.join(NETRL2_ARCHS),
    )
    parser.add_argument('src', help='official checkpoint (.pth) to read; never modified')
    parser.add_argument('dst', help='output checkpoint (.pth); written atomically')
    parser.add_argument(
        '--arch', required=True, metavar='NAME', help='paper model name of SRC, e.g. "ResNet34-S48U1*" (quote the *)'
    )
    args = parser.parse_args(argv)
    if args.arch not in NETRL2_ARCHS:
        parser.error(f'--arch {args.arch!r} is not known; choose one of: {", ".join(NETRL2_ARCHS)}')
    return args


def usage_snippet(arch: str, dst: str) -> str:
    """The detector-config lines that load ``dst`` into the backbone of ``arch``."""
    kind = paper_backbone_cfg(arch)['type']
    return (
        f'model = dict(backbone=dict(_delete_=True, type={kind!r}, arch={arch!r},\n'
        f"                           init_cfg=dict(type='Pretrained', checkpoint={dst!r})))"
    )


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
    print(
        f'converted {args.src} ({NETRL2_ARCHS[args.arch]}) -> {args.dst}: {len(converted)} tensors, '
        f'{n_params:,} parameters (classifier dropped)'
    )
    print('use it as the backbone init in a detector config:\n' + usage_snippet(args.arch, args.dst))
    return 0


if __name__ == '__main__':
    sys.exit(main())
