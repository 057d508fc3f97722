"""How the splits of a VOC-style detection config differ: pixel statistics, object sizes and density.

    python -m experiments.scene_statistics [CONFIG] [--splits train val]

For each split (the config's training or validation dataset, the split swapped in as the ``split`` argument of
its dataset, e.g. ``DeepForestTreesDataset``), one row: the share of black border padding (pixels whose every
channel is at most 4, as ``StandardizeImage`` counts them), the images' per-channel (BGR) mean and standard
deviation over their other pixels as read from disk, the same after ``StandardizeImage`` (what the trees recipe
feeds the network), the percentiles 10/50/90 of the boxes' sqrt(area) in pixels of the stored image, and the
boxes per image. The default config is the real-image study's
(``configs/deepforest/faster-rcnn_r18_slim-fpn_scratch-16e_trees.py``). Reads the images only, trains nothing; a few
seconds.
"""

import argparse
import os.path as osp
import sys
from typing import List, Optional

import numpy as np

DEFAULT = 'configs/deepforest/faster-rcnn_r18_slim-fpn_scratch-16e_trees.py'


def split_statistics(dataset_cfg: dict) -> dict:
    """Pixel, box and density statistics of one dataset (a config's ``dataloader.dataset``, any wrapper removed)."""
    import mmcv
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    from mmbasis.datasets import StandardizeImage

    init_default_scope('mmdet')
    dataset = DATASETS.build(dict(dataset_cfg, pipeline=[], test_mode=True))
    standardize = StandardizeImage()
    sums = np.zeros((2, 3, 2))  # raw / standardised, channel, (sum, sum of squares)
    pixels, padding, sides, counts = 0, 0, [], []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        img = mmcv.imread(info['img_path']).astype(np.float64)
        std_img = standardize(dict(img=img.astype(np.uint8)))['img'].astype(np.float64)
        valid = img.max(axis=2) > standardize.pad_max
        for k, x in enumerate((img, std_img)):
            flat = x[valid]
            sums[k, :, 0] += flat.sum(0)
            sums[k, :, 1] += (flat**2).sum(0)
        pixels += int(valid.sum())
        padding += int((~valid).sum())
        boxes = np.array([inst['bbox'] for inst in info['instances']], dtype=np.float64).reshape(-1, 4)
        sides.extend(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        counts.append(len(boxes))
    if not counts:
        raise ValueError(f'{dataset_cfg.get("type")} {dataset_cfg.get("split", "")}: the dataset is empty')
    mean = sums[..., 0] / pixels
    std = np.sqrt(np.maximum(sums[..., 1] / pixels - mean**2, 0))
    return dict(
        images=len(counts),
        padding=padding / (padding + pixels),
        mean=mean[0],
        std=std[0],
        std_mean=mean[1],
        std_std=std[1],
        side=np.percentile(sides, [10, 50, 90]) if sides else np.full(3, np.nan),
        boxes_per_image=float(np.mean(counts)),
    )


def table(config: str, splits: List[str]) -> str:
    from mmengine.config import Config

    cfg = Config.fromfile(config)
    lines = [
        '| split | images | padding | BGR mean | BGR std | standardised mean / std | box sqrt(area) p10/50/90 px '
        '| boxes/image |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for split in splits:
        loader = cfg.train_dataloader if split == 'train' else cfg.val_dataloader
        dataset_cfg = loader.dataset
        while 'dataset' in dataset_cfg:  # RepeatDataset and friends
            dataset_cfg = dataset_cfg.dataset
        s = split_statistics(dict(dataset_cfg, split=split))

        def fmt(v, digits=0):
            return '/'.join(f'{x:.{digits}f}' for x in v)

        lines.append(
            f'| {split} | {s["images"]} | {100 * s["padding"]:.1f} % | {fmt(s["mean"])} | {fmt(s["std"])} | '
            f'{fmt(s["std_mean"])} / {fmt(s["std_std"])} | {fmt(s["side"], 1)} | {s["boxes_per_image"]:.1f} |'
        )
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', default=DEFAULT)
    parser.add_argument('--splits', nargs='+', default=['train', 'val'], choices=['train', 'val', 'test'])
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'no such config: {args.config}')
    print(table(args.config, args.splits))
    return 0


if __name__ == '__main__':
    sys.exit(main())
