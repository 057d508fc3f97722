"""Tile large Pascal VOC-annotated images (aerial or satellite scenes, ...) into a VOC folder for mmdet.

    python tools/dataset_converters/voc_tiles.py OUT_FOLDER --classes NAME [NAME ...] \
        --train IMAGE [IMAGE ...] [--val IMAGE ...] [--test IMAGE ...] [--ann-dir DIR] \
        [--tile-size 400] [--train-overlap 0.5] [--min-visible 0.5] [--below-min-visible difficult|drop] \
        [--jpeg-quality 95] [--max-tiles N]

Each IMAGE (any format OpenCV reads) needs its VOC XML ``<stem>.xml``: in ``--ann-dir`` when given, else beside
the image or, for an image in a ``JPEGImages`` folder, in the sibling ``Annotations`` folder. Writes
``OUT_FOLDER/{JPEGImages,Annotations,ImageSets/Main/<split>.txt,manifest.json}``; mmdet's ``VOCDataset`` reads a
split with ``data_root=<parent of OUT_FOLDER>``, ``ann_file='<name>/ImageSets/Main/<split>.txt'``,
``data_prefix=dict(sub_data_root='<name>/')`` and ``metainfo=dict(classes=(...))``. An image may be in val and
test, never in train and another split. Bad boxes are fixed by stated rules and reported, or refused
(``mmbasis/datasets/voc_xml.py``); tiling rules: ``mmbasis/datasets/voc_tiles.py``. The folder is written
atomically; the same arguments again change nothing, other arguments are refused (exit code 1).
"""

import argparse
import hashlib
import os.path as osp
import sys
from typing import Dict, List, Optional

from mmbasis.datasets import VOCSource, make_tiled_voc
from mmbasis.utils.cli import add_tile_args, run_tiling, tile_args


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_folder', help='the VOC folder to write (its name must not contain VOC2007/VOC2012)')
    parser.add_argument('--classes', nargs='+', required=True, help='the class names (others are refused)')
    for split in ('train', 'val', 'test'):
        parser.add_argument(f'--{split}', nargs='+', default=[], metavar='IMAGE', help=f'source images of {split}')
    parser.add_argument('--ann-dir', help='folder of the <image stem>.xml annotations')
    add_tile_args(parser)
    args = parser.parse_args(argv)
    if not (args.train or args.val or args.test):
        parser.error('give the images of at least one split (--train, --val, --test)')
    return args


def annotation_of(image: str, ann_dir: Optional[str]) -> str:
    """The XML of ``image`` by the rule of the module docstring; ``FileNotFoundError`` naming the places tried."""
    stem = osp.splitext(osp.basename(image))[0]
    folder = osp.dirname(image)
    if ann_dir is not None:
        tried = [osp.join(ann_dir, f'{stem}.xml')]
    else:
        tried = [osp.join(folder, f'{stem}.xml')]
        if osp.basename(osp.normpath(folder or '.')) == 'JPEGImages':
            tried.append(osp.join(osp.dirname(osp.normpath(folder)), 'Annotations', f'{stem}.xml'))
    for path in tried:
        if osp.isfile(path):
            return path
    raise FileNotFoundError(f'no annotation for {image}: tried {", ".join(tried)}')


def tile(args: argparse.Namespace):
    """The images of ``args`` (their annotations found), tiled into ``args.out_folder``."""
    sources: Dict[str, VOCSource] = {}
    splits: Dict[str, List[str]] = {}
    for split in ('train', 'val', 'test'):
        for image in getattr(args, split):
            source = VOCSource.from_files(image, annotation_of(image, args.ann_dir))
            if source.stem in sources and sources[source.stem] != source:
                raise ValueError(f'two different images are both named {source.stem} (tile ids would collide)')
            sources[source.stem] = source
            splits.setdefault(split, []).append(source.stem)
    digest = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    origin = {n: dict(image_sha256=digest(s.image), xml_sha256=digest(s.annotation)) for n, s in sources.items()}
    return make_tiled_voc(args.out_folder, splits, sources, args.classes, origin, **tile_args(args))


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tiling('voc_tiles', lambda: tile(args), errors=(OSError, ValueError))


if __name__ == '__main__':
    sys.exit(main())
