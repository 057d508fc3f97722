"""Predictions of a trained detector next to the ground truth on validation images, drawn by mmdet's visualiser.

    python -m experiments.predictions_picture CONFIG CHECKPOINT OUT.jpg [--images 2] [--score-thr 0.3]

Each row is one validation image of the config's ``val_dataloader``: on the left its ground-truth boxes (difficult
ones included), on the right the detector's predictions above ``--score-thr``, as mmdet's ``DetLocalVisualizer``
draws a data sample with both. The images shown are the ``--images`` validation images with the most ground-truth
boxes (ties by dataset order), so the same command gives the same picture.
"""

import argparse
import os.path as osp
import sys
import time
from typing import List, Optional

import numpy as np


def pick(dataset, count: int) -> List[int]:
    """Indices of the ``count`` images with the most ground-truth boxes, in dataset order among equals."""
    sizes = [len(dataset.get_data_info(i)['instances']) for i in range(len(dataset))]
    return sorted(sorted(range(len(sizes)), key=lambda i: -sizes[i])[:count])


def ground_truth(info: dict):
    """The image's boxes as the ``gt_instances`` of a data sample (original image coordinates)."""
    import torch
    from mmengine.structures import InstanceData

    boxes = [inst['bbox'] for inst in info['instances']]
    gt = InstanceData()
    gt.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    gt.labels = torch.tensor([inst['bbox_label'] for inst in info['instances']], dtype=torch.long)
    return gt


def draw(config: str, checkpoint: str, out: str, images: int = 2, score_thr: float = 0.3) -> str:
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import DATASETS
    from mmdet.visualization import DetLocalVisualizer
    from mmengine.registry import init_default_scope

    model = init_detector(config, checkpoint, device='cpu')
    init_default_scope('mmdet')
    dataset = DATASETS.build(model.cfg.val_dataloader.dataset)
    visualizer = DetLocalVisualizer(name=f'mmbasis_picture_{time.time_ns()}')
    visualizer.dataset_meta = dataset.metainfo
    rows = []
    for i in pick(dataset, images):
        info = dataset.get_data_info(i)
        result = inference_detector(model, info['img_path'])
        result.gt_instances = ground_truth(info)
        image = mmcv.imread(info['img_path'], channel_order='rgb')
        visualizer.add_datasample(f'val_{i}', image, data_sample=result, draw_gt=True, pred_score_thr=score_thr)
        rows.append(visualizer.get_image())
    if not rows:
        raise ValueError(f'{config}: the validation dataset is empty')
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    mmcv.imwrite(mmcv.rgb2bgr(np.concatenate(rows, axis=0)), out, auto_mkdir=True)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='the picture (.jpg or .png)')
    parser.add_argument('--images', type=int, default=2, help='validation images, one per row (default 2)')
    parser.add_argument('--score-thr', type=float, default=0.3, help='predictions drawn above this score (0.3)')
    args = parser.parse_args(argv)
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            parser.error(f'no such file: {path}')
    if args.images < 1:
        parser.error(f'--images {args.images} must be >= 1')
    if not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr {args.score_thr} must be in [0, 1]')
    print(draw(args.config, args.checkpoint, args.out, args.images, args.score_thr))
    return 0


if __name__ == '__main__':
    sys.exit(main())
