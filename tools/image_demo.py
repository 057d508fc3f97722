"""Detect objects in images with a trained checkpoint, the mmdet way (``mmdet.apis.DetInferencer``).

    python tools/image_demo.py IMAGE CONFIG --weights CKPT [--out-dir DIR] [--device cpu] [--pred-score-thr 0.3]

IMAGE is an image file or a folder of images. Writes ``DIR/vis/<image name>`` (the image with the predictions of
score >= ``--pred-score-thr`` drawn) and ``DIR/preds/<image stem>.json`` (every prediction: ``labels``, ``scores``,
``bboxes`` in pixels, x1 y1 x2 y2). Class names come from the checkpoint's ``meta.dataset_meta`` (what training
with mmengine's Runner stores), else the config's dataset.

mmbasis needs no special step here: ``DetInferencer`` reads the config with ``Config.fromfile``, which imports the
config's ``custom_imports`` (``mmbasis``: registers the shared-basis backbones and heads, and lets torch >= 2.6 load
mmengine checkpoints) before the model is built and the checkpoint loaded. mmdet's own ``demo/image_demo.py`` works
with our configs in the same way.
"""

import argparse
import os.path as osp
import sys
from typing import List, Optional

import torch


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Detect objects in images with a config and a checkpoint')
    parser.add_argument('image', help='image file, or a folder of images')
    parser.add_argument('config', help='config file, e.g. configs/faster_rcnn/faster-rcnn_r50-in1k_fpn_1x_coco.py')
    parser.add_argument('--weights', required=True, help='checkpoint file of the detector')
    parser.add_argument('--out-dir', default='outputs', help='output folder (default: outputs)')
    parser.add_argument(
        '--device',
        default=None,
        help="'cpu', 'cuda' or 'cuda:N' (default: the first GPU when there is one, else the CPU)",
    )
    parser.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        help='draw predictions with at least this score (default: 0.3; the JSON has all of them)',
    )
    parser.add_argument(
        '--deploy',
        action='store_true',
        help='fold the backbone into its deploy form after loading the (training) checkpoint',
    )
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> Optional[str]:
    """The first problem with the arguments, as a message, or None."""
    problems = [
        (not osp.exists(args.image), f'image {args.image!r} does not exist'),
        (not osp.isfile(args.config), f'config file {args.config!r} does not exist'),
        (not osp.isfile(args.weights), f'checkpoint {args.weights!r} does not exist'),
        (
            not 0 <= args.pred_score_thr <= 1,
            f'--pred-score-thr {args.pred_score_thr} is not allowed: give a score in [0, 1]',
        ),
        (
            args.device is not None and args.device.startswith('cuda') and not torch.cuda.is_available(),
            f'--device {args.device} is not available: this machine has no CUDA GPU (use --device cpu)',
        ),
        (osp.isfile(args.out_dir), f'--out-dir {args.out_dir!r} is a file, not a folder'),
    ]
    return next((message for failed, message in problems if failed), None)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    problem = check_args(args)
    if problem is not None:
        print(f'error: {problem}', file=sys.stderr)
        return 1
    from mmdet.apis import DetInferencer

    inferencer = DetInferencer(model=args.config, weights=args.weights, device=args.device, show_progress=False)
    if args.deploy:
        from mmbasis.engine.hooks.deploy_hook import find_backbone

        backbone = find_backbone(inferencer.model)
        if not hasattr(backbone, 'switch_to_deploy'):
            print(f'error: --deploy: the backbone {type(backbone).__name__} has no deploy form', file=sys.stderr)
            return 1
        backbone.switch_to_deploy()
    inferencer(
        args.image, out_dir=args.out_dir, pred_score_thr=args.pred_score_thr, no_save_vis=False, no_save_pred=False
    )
    print(f'results written to {osp.join(args.out_dir, "vis")} (drawn) and {osp.join(args.out_dir, "preds")} (JSON)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
