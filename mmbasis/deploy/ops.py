"""The two operators of an end-to-end detector that are not plain tensor algebra, as exportable torch ops.

``mmbasis::nms_keep`` is greedy non-maximum suppression returning a *mask* of the boxes it keeps: its output
has the shape of its input, so everything before the final selection of detections keeps static shapes and
``torch.export`` needs no data-dependent sizes. In PyTorch it runs mmcv's ``nms`` (the kernel mmdet's
``batched_nms`` uses); in ONNX it becomes the standard ``NonMaxSuppression`` operator followed by a scatter
into the mask (:func:`onnx_translations`, passed to ``torch.onnx.export(custom_translation_table=...)``), which
onnxruntime and OpenVINO run natively. RoI pooling is torchvision's ``roi_align``, which torch's exporter
translates to ONNX ``RoiAlign`` (opset 16+: ``half_pixel`` for ``aligned=True``).
"""

import torch
from torch import Tensor


@torch.library.custom_op('mmbasis::nms_keep', mutates_args=())
def nms_keep(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    """Greedy NMS over the boxes whose score is above ``score_threshold``: a bool mask of the kept ones.

    Shapes: ``boxes (N, 4)`` as ``x1, y1, x2, y2``, ``scores (N,)`` -> ``(N,)`` bool. A box is suppressed by a
    kept box of higher score when their IoU exceeds ``iou_threshold`` (mmcv's and ONNX's rule). Boxes of
    different classes are kept apart by the caller (coordinate offsets per class, as mmdet's ``batched_nms``).
    """
    from mmcv.ops import nms  # noqa: PLC0415  (mmcv's compiled ops load only when needed)

    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    candidates = torch.nonzero(scores > score_threshold).view(-1)
    if candidates.numel():
        _, kept = nms(boxes[candidates].float(), scores[candidates].float(), iou_threshold)
        keep[candidates[kept]] = True
    return keep


@nms_keep.register_fake
def _nms_keep_fake(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    return scores.new_empty(scores.shape, dtype=torch.bool)


def _nms_keep_onnx(boxes, scores, iou_threshold: float, score_threshold: float):
    """ONNX: ``NonMaxSuppression`` on one batch and one class, its selected indices scattered into a mask."""
    from onnxscript import BOOL  # noqa: PLC0415
    from onnxscript import opset18 as op  # noqa: PLC0415

    count = op.Shape(scores)  # (1,) int64: at most every box is kept
    selected = op.NonMaxSuppression(
        op.Unsqueeze(boxes, [0]),
        op.Unsqueeze(scores, [0, 1]),
        count,
        op.Constant(value_float=iou_threshold),
        op.Constant(value_float=score_threshold),
    )  # (M, 3): batch, class, box index
    index = op.Reshape(op.Slice(selected, [2], [3], [1]), [-1])
    ones = op.Expand(op.Constant(value_float=1.0), op.Shape(index))
    mask = op.ScatterElements(op.ConstantOfShape(count), index, ones, axis=0)  # float32 zeros, ones where kept
    return op.Cast(mask, to=BOOL.dtype)


def onnx_translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: our operators in ONNX."""
    return {torch.ops.mmbasis.nms_keep.default: _nms_keep_onnx}
