"""Make the real-image dataset: two annotated NEON aerial scenes of the deepforest wheel, tiled into Pascal VOC.

    python tools/dataset_converters/deepforest_to_voc.py [--out-dir data/deepforest_trees] [--tile-size 400]
        [--train-overlap 0.5] [--min-visible 0.5] [--below-min-visible difficult|drop] [--jpeg-quality 95]
        [--max-tiles N] [--cache-dir DIR]

Downloads ``deepforest==2.1.0`` once with ``pip download --no-deps`` (nothing is installed; the wheel's SHA-256
is checked at every use) into the set-up's cache, reads the two Yellowstone scenes and their VOC XML from it, and
writes ``OUT_DIR/YELL2019/{JPEGImages,Annotations,ImageSets/Main/{train,val,test}.txt}`` for mmdet's
``VOCDataset`` (class ``Tree``), atomically. Running it again with the same arguments changes nothing; an existing
folder made with other arguments is refused (exit code 1). Configs can instead use ``DeepForestTreesDataset``,
which does the same on first use. Tiling rules: ``mmbasis/datasets/voc_tiles.py``.
"""

import argparse
import sys

from mmbasis.datasets import make_deepforest_voc
from mmbasis.datasets.deepforest import FOLDER
from mmbasis.utils.cli import add_tile_args, run_tiling, tile_args


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--out-dir', default='data/deepforest_trees', help=f'data root; the VOC folder is OUT_DIR/{FOLDER}/'
    )
    parser.add_argument('--cache-dir', help='where the wheel is kept (default: the set-up cache, see above)')
    add_tile_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tiling(
        'deepforest_to_voc', lambda: make_deepforest_voc(args.out_dir, cache=args.cache_dir, **tile_args(args))
    )


if __name__ == '__main__':
    sys.exit(main())
