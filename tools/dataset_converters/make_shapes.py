"""Generate the "shapes" detection dataset (COCO format) without training anything.

    # every shapes split a config uses (default: the demo config), exactly as training would make them
    python tools/dataset_converters/make_shapes.py [--config CONFIG] [--cfg-options k=v ...]
    # one split with explicit arguments
    python tools/dataset_converters/make_shapes.py --root data/shapes --split train --num-images 320 \
        [--img-size 160] [--seed 0] [--max-objects 4]

Each split becomes ``ROOT/SPLIT/{images/*.png, annotation.json, meta.json}``; it is written atomically and an
existing split is reused when it was generated with the same arguments and refused (exit code 1) otherwise.
"""

import argparse
import os.path as osp
import sys
import time

from mmengine.config import DictAction

import mmbasis  # noqa: F401
from mmbasis.datasets import generate_shapes_for_config, generate_shapes_split
from mmbasis.utils import get_config_path
from mmbasis.utils.cli import read_config

DEFAULT_CONFIG = 'shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', help=f'take the splits from this config (default: configs/{DEFAULT_CONFIG})')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='overrides for --config, key=value')
    parser.add_argument('--root', help="generate one split under this folder instead of a config's splits")
    parser.add_argument('--split', default='train', help='split folder name (with --root; default train)')
    parser.add_argument('--num-images', type=int, default=200, help='images in the split (with --root)')
    parser.add_argument('--img-size', type=int, default=160, help='square image side in pixels (with --root)')
    parser.add_argument('--seed', type=int, default=0, help='generation seed (with --root)')
    parser.add_argument('--max-objects', type=int, default=4, help='at most this many objects per image')
    args = parser.parse_args(argv)
    if args.root is not None and (args.config is not None or args.cfg_options):
        parser.error(
            '--root generates one split from explicit arguments; it cannot be combined with --config or --cfg-options'
        )
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    try:
        if args.root is not None:
            folders = [
                generate_shapes_split(
                    args.root, args.split, args.num_images, args.img_size, args.seed, args.max_objects
                )
            ]
        else:
            config = args.config or get_config_path(DEFAULT_CONFIG)
            cfg = read_config(config, args.cfg_options)
            folders = generate_shapes_for_config(cfg)
            if not folders:
                raise ValueError(f'{config} uses no SyntheticShapesDataset')
    except (OSError, ValueError, TypeError) as e:
        print(f'make_shapes: error: {e}', file=sys.stderr)
        return 1
    for folder in folders:
        print(f'{folder}: {osp.join(folder, "annotation.json")}')
    print(f'make_shapes: {len(folders)} split(s) ready in {time.time() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
