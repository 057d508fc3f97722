"""End-to-end detectors for deployment: an image in; boxes, scores and labels out, decoding and NMS inside.

:class:`End2EndDetector` wraps a built mmdet detector (its backbone in deploy form) for one fixed input size
``H x W`` and batch size and computes what mmdet's ``predict`` computes for that input, as one exportable graph:

* the data preprocessor's channel conversion and normalisation;
* the network (backbone, neck, heads);
* the head's decoding with the config's ``test_cfg``: score threshold, ``nms_pre`` per level, box decoding
  with clipping to the input, ``min_bbox_size``, class-wise NMS (mmdet's ``batched_nms``: per-class coordinate
  offsets, one NMS), ``max_per_img``; for two-stage detectors the RPN proposals (level-wise NMS), RoIAlign on
  the pyramid level mmdet's ``SingleRoIExtractor`` picks, the box head and its class-wise NMS.

Shapes that depend on the data stay out of the graph until the end: candidates keep a static count and carry
a validity mask (NMS returns a mask, :mod:`mmbasis.deploy.ops`), and only the final detections are
selected. Supported: single-stage detectors with an anchor-based head without score factors (SSD, SSDLite,
RetinaNet ...) and two-stage detectors with an ``RPNHead`` and a ``StandardRoIHead`` (Faster R-CNN).
"""

from typing import List, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn

from .ops import nms_keep

FILL = -1.0  # the score of a candidate that is not one (scores are probabilities in [0, 1])


def _top(keep: Tensor, scores: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The ``k`` highest-scoring kept candidates: their scores, indices and whether each is a detection."""
    top, index = torch.where(keep, scores, torch.full_like(scores, FILL)).topk(min(k, scores.numel()))
    return top, index, top > FILL / 2


def batched_keep(boxes: Tensor, scores: Tensor, groups: Tensor, valid: Tensor, iou_threshold: float) -> Tensor:
    """mmdet's ``batched_nms`` as a mask: NMS within each group (class or level) among the ``valid`` candidates.

    Groups are kept apart by offsetting their boxes by ``group * (max coordinate + 1)``, the max taken over the
    valid boxes, exactly as mmdet does. Shapes: ``(N, 4)``, ``(N,)``, ``(N,)``, ``(N,)`` -> ``(N,)`` bool.
    """
    max_coordinate = torch.where(valid[:, None], boxes, torch.zeros_like(boxes)).max()
    shifted = boxes + (groups.to(boxes) * (max_coordinate + 1))[:, None]
    return nms_keep(shifted, torch.where(valid, scores, torch.full_like(scores, FILL)), iou_threshold, FILL / 2)


def _nms_iou(cfg) -> float:
    nms = cfg.get('nms') or {}
    if nms.get('type', 'nms') != 'nms' or nms.get('class_agnostic', False):
        raise ValueError(
            f'test_cfg nms={dict(nms)!r} is not supported by the end-to-end export: only '
            "dict(type='nms', iou_threshold=...) (class-wise NMS, as in our configs)"
        )
    return float(nms['iou_threshold'])


def _flat(maps: Sequence[Tensor], channels: int, image: int) -> List[Tensor]:
    """Per level ``(B, A * channels, h, w)`` -> ``(h * w * A, channels)`` of image ``image``: mmdet's order of the
    priors."""
    return [m[image].permute(1, 2, 0).reshape(-1, channels) for m in maps]


class _DenseDecoder(nn.Module):
    """Decoding and NMS of an anchor-based single-stage head (mmdet's ``BaseDenseHead.predict_by_feat``)."""

    def __init__(self, head: nn.Module, priors: List[Tensor], input_shape: Tuple[int, int]) -> None:
        super().__init__()
        if getattr(getattr(head, 'loss_cls', None), 'custom_cls_channels', False):
            raise ValueError(f'{type(head).__name__} with custom classification channels is not supported')
        self.head, self.input_shape, self.cfg = head, input_shape, head.test_cfg
        self.iou = _nms_iou(self.cfg)
        for i, p in enumerate(priors):
            self.register_buffer(f'priors{i}', p, persistent=False)
        self.num_levels = len(priors)

    def forward(self, feats: Sequence[Tensor]) -> List[Tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Per image of the batch: ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)`` and ``found (K,)`` (whether
        each of the ``K`` slots is a detection), sorted by decreasing score."""
        outputs = self.head(feats)  # the head runs once on the whole batch
        if len(outputs) != 2:  # e.g. ATSS' centerness: score factors are not supported
            raise ValueError(
                f'{type(self.head).__name__} returns {len(outputs)} outputs; only (scores, boxes) heads export'
            )
        return [self.decode(*outputs, image) for image in range(feats[0].shape[0])]

    def decode(
        self, cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor], image: int
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """The detections of image ``image`` from the head's batched outputs."""
        head, cfg = self.head, self.cfg
        thr, nms_pre = float(cfg.get('score_thr', 0)), int(cfg.get('nms_pre', -1))
        boxes, scores, labels, priors = [], [], [], []
        deltas = _flat(bbox_preds, head.bbox_coder.encode_size, image)
        for level, cls in enumerate(_flat(cls_scores, head.cls_out_channels, image)):
            prob = cls.sigmoid() if head.use_sigmoid_cls else cls.softmax(-1)[:, :-1]
            num_classes = prob.shape[1]
            flat = prob.reshape(-1)  # candidate index = prior * num_classes + class, as mmdet's filter_scores_and_topk
            flat = torch.where(flat > thr, flat, torch.full_like(flat, FILL))
            top, index = flat.topk(nms_pre if 0 < nms_pre < flat.numel() else flat.numel())
            prior = torch.div(index, num_classes, rounding_mode='floor')
            scores.append(top)
            labels.append(index - prior * num_classes)
            boxes.append(deltas[level][prior])
            priors.append(getattr(self, f'priors{level}')[prior])
        scores, labels = torch.cat(scores), torch.cat(labels)
        boxes = head.bbox_coder.decode(torch.cat(priors), torch.cat(boxes), max_shape=self.input_shape)
        valid = scores > FILL / 2
        if cfg.get('min_bbox_size', -1) >= 0:
            valid = valid & _large_enough(boxes, cfg.min_bbox_size)
        keep = batched_keep(boxes, scores, labels, valid, self.iou)
        top, index, found = _top(keep, scores, int(cfg.max_per_img))
        return boxes[index], top, labels[index], found


def _large_enough(boxes: Tensor, size: float) -> Tensor:
    return ((boxes[:, 2] - boxes[:, 0]) > size) & ((boxes[:, 3] - boxes[:, 1]) > size)


class _TwoStageDecoder(nn.Module):
    """RPN proposals, RoI features and the box head's decoding and NMS (mmdet's ``TwoStageDetector.predict``)."""

    def __init__(self, detector: nn.Module, priors: List[Tensor], input_shape: Tuple[int, int]) -> None:
        super().__init__()
        from mmdet.models.roi_heads import StandardRoIHead  # noqa: PLC0415
        from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor  # noqa: PLC0415

        roi_head = detector.roi_head
        if type(roi_head) is not StandardRoIHead or roi_head.with_mask or roi_head.with_shared_head:
            raise ValueError(
                f'{type(roi_head).__name__} is not supported by the end-to-end export: only a StandardRoIHead '
                'with a box head (Faster R-CNN), without mask or shared head'
            )
        extractor = roi_head.bbox_roi_extractor
        layers = list(extractor.roi_layers)
        if not isinstance(extractor, SingleRoIExtractor) or any(
            type(la).__name__ != 'RoIAlign' or la.pool_mode != 'avg' for la in layers
        ):
            raise ValueError('only a SingleRoIExtractor with average RoIAlign layers can be exported end to end')
        if getattr(roi_head.bbox_head, 'custom_cls_channels', False):
            raise ValueError('a box head with custom classification channels is not supported')
        self.rpn_head, self.roi_head, self.input_shape = detector.rpn_head, roi_head, input_shape
        self.rpn_cfg, self.rcnn_cfg = detector.rpn_head.test_cfg, roi_head.test_cfg
        self.rpn_iou, self.rcnn_iou = _nms_iou(self.rpn_cfg), _nms_iou(self.rcnn_cfg)
        for i, p in enumerate(priors):
            self.register_buffer(f'priors{i}', p, persistent=False)

    def proposals(
        self, cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor], image: int
    ) -> Tuple[Tensor, Tensor]:
        """``(K, 4)`` proposals of image ``image`` sorted by score and ``(K,)`` whether each is one (mmdet's
        ``RPNHead.predict``), from the RPN head's batched outputs."""
        head, cfg = self.rpn_head, self.rpn_cfg
        nms_pre = int(cfg.get('nms_pre', -1))
        deltas = _flat(bbox_preds, head.bbox_coder.encode_size, image)
        scores, boxes, priors, levels = [], [], [], []
        for level, cls in enumerate(_flat(cls_scores, head.cls_out_channels, image)):
            prob = (cls.sigmoid() if head.use_sigmoid_cls else cls.softmax(-1)[:, :-1])[:, 0]
            top, index = prob.topk(nms_pre if 0 < nms_pre < prob.numel() else prob.numel())
            scores.append(top)
            boxes.append(deltas[level][index])
            priors.append(getattr(self, f'priors{level}')[index])
            levels.append(torch.full_like(index, level))
        scores, levels = torch.cat(scores), torch.cat(levels)
        boxes = head.bbox_coder.decode(torch.cat(priors), torch.cat(boxes), max_shape=self.input_shape)
        valid = torch.ones_like(scores, dtype=torch.bool)
        if cfg.get('min_bbox_size', -1) >= 0:
            valid = _large_enough(boxes, cfg.min_bbox_size)
        keep = batched_keep(boxes, scores, levels, valid, self.rpn_iou)
        _, index, found = _top(keep, scores, int(cfg.max_per_img))
        return boxes[index], found

    def roi_features(self, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
        """RoIAlign of every RoI ``(K, 5)`` (image index, box) on the level mmdet's ``SingleRoIExtractor`` maps it
        to: ``(K, C, h, w)``."""
        extractor = self.roi_head.bbox_roi_extractor
        feats = feats[: extractor.num_inputs]
        level = extractor.map_roi_levels(rois, len(feats))
        out = None
        for i, (feat, layer) in enumerate(zip(feats, extractor.roi_layers)):
            pooled = torchvision.ops.roi_align(
                feat, rois, layer.output_size, layer.spatial_scale, layer.sampling_ratio, layer.aligned
            )
            out = pooled if out is None else torch.where((level == i)[:, None, None, None], pooled, out)
        return out

    def forward(self, feats: Sequence[Tensor]) -> List[Tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Per image of the batch: ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)`` and ``found (K,)``; the RPN
        head, RoIAlign and the box head each run once on the whole batch, proposals and NMS per image."""
        rpn_outputs = self.rpn_head(feats)
        proposals, is_proposal = zip(*(self.proposals(*rpn_outputs, i) for i in range(feats[0].shape[0])))
        rois = torch.cat([torch.cat([p.new_full((p.shape[0], 1), i), p], dim=1) for i, p in enumerate(proposals)])
        cls_score, bbox_pred = self.roi_head.bbox_head(self.roi_features(feats, rois))
        per_image = proposals[0].shape[0]  # every image has the same (static) number of proposal slots
        return [
            self.decode(
                proposals[i],
                is_proposal[i],
                cls_score[i * per_image : (i + 1) * per_image],
                bbox_pred[i * per_image : (i + 1) * per_image],
            )
            for i in range(len(proposals))
        ]

    def decode(
        self, proposals: Tensor, is_proposal: Tensor, cls_score: Tensor, bbox_pred: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """The box head's decoding and class-wise NMS of one image's ``K`` proposals (mmdet's ``predict_bbox``)."""
        bbox_head, cfg = self.roi_head.bbox_head, self.rcnn_cfg
        scores = cls_score.softmax(-1)[:, :-1]  # (K, C)
        num_rois, num_classes = scores.shape
        per_roi = 1 if bbox_head.reg_class_agnostic else num_classes
        boxes = bbox_head.bbox_coder.decode(
            proposals.repeat_interleave(per_roi, dim=0),
            bbox_pred.reshape(-1, bbox_head.bbox_coder.encode_size),
            max_shape=self.input_shape,
        ).reshape(num_rois, per_roi, 4)
        boxes = boxes.expand(num_rois, num_classes, 4).reshape(-1, 4)  # mmdet's multiclass_nms layout
        scores = scores.reshape(-1)
        labels = torch.arange(num_classes, device=scores.device).repeat(num_rois)
        valid = (scores > float(cfg.score_thr)) & is_proposal.repeat_interleave(num_classes)
        keep = batched_keep(boxes, scores, labels, valid, self.rcnn_iou)
        top, index, found = _top(keep, scores, int(cfg.max_per_img))
        return boxes[index], top, labels[index], found


class End2EndDetector(nn.Module):
    """``detector`` from a batch of ``batch_size`` images to their detections, for one input size ``input_shape``.

    Input: float32 ``(B, 3, H, W)``, ``B = batch_size``, each image as the config's pipeline loads it (mmdet's
    ``LoadImageFromFile``: BGR, 0..255), already resized/padded to ``H x W`` (``H`` and ``W`` multiples of the
    preprocessor's ``pad_size_divisor``). Each image gets what mmdet's ``predict(..., rescale=False)`` returns for
    an image whose ``img_shape`` is ``(H, W)``: boxes (``x1, y1, x2, y2`` in input pixels, clipped to it), scores
    and labels, at most ``max_per_img``, sorted by decreasing score. Outputs:

    * ``batch_size=1`` (the default): ``boxes (K, 4)`` float32, ``scores (K,)`` float32, ``labels (K,)`` int64,
      ``K`` the number of detections;
    * ``batch_size > 1``: ``boxes (B, K, 4)``, ``scores (B, K)``, ``labels (B, K)`` with ``K`` the fixed number of
      slots (``max_per_img``, or fewer when there are fewer candidates); an image's detections come first, its
      empty slots have label ``-1``, score 0 and a zero box (as mmdeploy pads a batch).

    The network (backbone, neck, heads, RoIAlign, the box head) runs once on the whole batch; decoding and NMS run
    per image inside the graph.
    """

    def __init__(self, detector: nn.Module, input_shape: Sequence[int], batch_size: int = 1) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size={batch_size!r} is not allowed: a positive integer (1: one image)')
        self.batch_size = batch_size
        h, w = (int(s) for s in input_shape)
        prep = detector.data_preprocessor
        divisor = int(getattr(prep, 'pad_size_divisor', 1))
        if h % divisor or w % divisor:
            raise ValueError(
                f'input size {h} x {w} is not allowed for this config: both sides must be multiples of its '
                f'pad_size_divisor {divisor}'
            )
        self.detector, self.input_shape = detector.eval(), (h, w)
        self.channel_flip = bool(getattr(prep, '_channel_conversion', False))
        self.normalize = bool(getattr(prep, '_enable_normalize', False))
        if self.normalize:
            self.register_buffer('mean', prep.mean.detach().clone().view(1, -1, 1, 1), persistent=False)
            self.register_buffer('std', prep.std.detach().clone().view(1, -1, 1, 1), persistent=False)
        two_stage = getattr(detector, 'with_rpn', False) and hasattr(detector, 'roi_head')
        head = detector.rpn_head if two_stage else getattr(detector, 'bbox_head', None)
        generator = type(getattr(head, 'prior_generator', None)).__name__
        if head is None or generator not in ('AnchorGenerator', 'SSDAnchorGenerator'):
            raise ValueError(
                f'{type(detector).__name__} ({type(head).__name__}, priors: {generator}) is not supported by the '
                'end-to-end export: it handles single-stage detectors with an anchor head (SSD, RetinaNet) and '
                'two-stage ones with an RPN and a StandardRoIHead (Faster R-CNN)'
            )
        with torch.no_grad():
            feats = detector.extract_feat(torch.zeros(1, 3, h, w))
        priors = head.prior_generator.grid_priors([f.shape[-2:] for f in feats], device='cpu')
        decoder = _TwoStageDecoder if two_stage else _DenseDecoder
        self.decoder = decoder(detector if two_stage else head, priors, self.input_shape)

    @property
    def test_cfg(self):
        """The test config of the last stage (its ``score_thr``, ``nms``, ``max_per_img`` shape the outputs)."""
        return getattr(self.decoder, 'rcnn_cfg', None) or self.decoder.cfg

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        if tuple(image.shape) != (self.batch_size, 3, *self.input_shape):
            raise ValueError(
                f'input of shape {tuple(image.shape)} is not allowed: this detector takes '
                f'{(self.batch_size, 3, *self.input_shape)} (batch_size, channels, H, W)'
            )
        x = image.float()
        if self.channel_flip:
            x = x.flip(1)
        if self.normalize:
            x = (x - self.mean) / self.std
        per_image = self.decoder(self.detector.extract_feat(x))
        if self.batch_size == 1:
            boxes, scores, labels, found = per_image[0]
            return boxes[found], scores[found], labels[found]
        boxes, scores, labels, found = (torch.stack(t) for t in zip(*per_image))
        return (
            torch.where(found[..., None], boxes, torch.zeros_like(boxes)),
            torch.where(found, scores, torch.zeros_like(scores)),
            torch.where(found, labels, torch.full_like(labels, -1)),
        )


def default_input_shape(cfg, fallback: Tuple[int, int] = (320, 320)) -> Tuple[int, int]:
    """``(H, W)`` an image of ``cfg``'s test pipeline fits in: its ``Resize`` scale (``keep_ratio``: long side
    ``max(scale)``, as a landscape image), rounded up to the preprocessor's ``pad_size_divisor``; ``fallback``
    without a fixed ``Resize`` scale."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    resize = next((t for t in dataset.get('pipeline', []) if t.get('type') == 'Resize' and t.get('scale')), None)
    if resize is None:
        return fallback
    scale = resize['scale']
    w, h = (scale, scale) if isinstance(scale, int) else tuple(scale)
    if resize.get('keep_ratio', False):
        h, w = min(h, w), max(h, w)
    divisor = int(cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1) or 1)
    return -(-h // divisor) * divisor, -(-w // divisor) * divisor
