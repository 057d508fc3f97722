"""Running an end-to-end ONNX detector in onnxruntime and OpenVINO, and checking its detections against PyTorch's.

The reference is mmdet's own ``predict`` of the same detector (backbone folded) on the same input tensor, with
``img_shape`` the input size and no rescaling: what ``End2EndDetector`` promises to compute. Detections are
matched one to one, greedily from the highest reference score: same label, IoU at least ``iou_threshold`` and
scores within ``score_tol``. Float32 kernels of the runtimes differ from PyTorch's by about 1e-6, which can
flip a decision only where two numbers tie that closely; the check tells such cases apart instead of hiding
them: an unmatched pair of the same label whose scores agree within ``score_tol`` and that overlap as much as
NMS calls the same object (the model's NMS IoU) is an *NMS tie* (either box may be kept), and an unmatched
detection whose score is within ``score_tol`` of a cut-off (the score threshold, or the lowest score of a list
cut at ``max_per_img``) is a *cut-off tie*. Anything else fails the check.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (K, 4), scores (K,), labels (K,)
RUNTIMES = ('onnxruntime', 'openvino')
OPENVINO_HINT = 'install it with: pip install -r requirements/deploy.txt (or mmbasis[deploy])'


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a (N, 4)`` with every box of ``b (M, 4)`` (``x1, y1, x2, y2``): ``(N, M)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


@dataclass
class MatchReport:
    """The outcome of :func:`match_detections` (``ok``: every detection matched or explained by a tie)."""

    num_reference: int
    num_other: int
    matched: int
    min_iou: float
    max_score_diff: float
    nms_ties: int = 0
    cutoff_ties: int = 0
    unexplained: List[str] = field(default_factory=list)
    exact_ties: int = 0

    @property
    def ok(self) -> bool:
        return not self.unexplained

    @classmethod
    def merge(cls, reports: Sequence['MatchReport']) -> 'MatchReport':
        """The reports of the images of a batch as one (counts summed; unexplained detections named by image)."""
        if len(reports) == 1:
            return reports[0]
        merged = cls(0, 0, 0, 1.0, 0.0)
        for i, r in enumerate(reports):
            merged.num_reference += r.num_reference
            merged.num_other += r.num_other
            merged.matched += r.matched
            merged.min_iou = min(merged.min_iou, r.min_iou)
            merged.max_score_diff = max(merged.max_score_diff, r.max_score_diff)
            merged.nms_ties += r.nms_ties
            merged.cutoff_ties += r.cutoff_ties
            merged.exact_ties += r.exact_ties
            merged.unexplained += [f'image {i}: {u}' for u in r.unexplained]
        return merged

    def summary(self) -> str:
        ties = f', ties: {self.nms_ties} NMS, {self.cutoff_ties} cut-off' if self.nms_ties or self.cutoff_ties else ''
        text = (
            f'{self.matched}/{self.num_reference} matched ({self.num_other} found), min IoU '
            f'{self.min_iou:.4f}, max |score diff| {self.max_score_diff:.1e}{ties}'
        )
        if self.unexplained:
            text += f'; unexplained: {"; ".join(self.unexplained[:4])}'
        if self.exact_ties:
            text += (
                f' ({self.exact_ties} unmatched detections share their score exactly with another, e.g. saturated '
                'at 1.0: the order NMS gives equal scores is implementation-defined, so such a model cannot be '
                'compared detection by detection)'
            )
        return text


def match_detections(
    reference: Detections,
    other: Detections,
    iou_threshold: float = 0.9,
    score_tol: float = 1e-4,
    nms_iou: float = 0.5,
    score_thr: float = 0.0,
    max_per_img: Optional[int] = None,
) -> MatchReport:
    """Match ``other``'s detections to ``reference``'s (see the module docstring for the rules)."""
    if not 0 < iou_threshold <= 1 or not score_tol >= 0:
        raise ValueError(f'iou_threshold={iou_threshold} must be in (0, 1] and score_tol={score_tol} >= 0')
    (rb, rs, rl), (ob, os_, ol) = [tuple(np.asarray(x) for x in d) for d in (reference, other)]
    iou = box_iou(rb.reshape(-1, 4), ob.reshape(-1, 4))
    compatible = (rl[:, None] == ol[None, :]) & (np.abs(rs[:, None] - os_[None, :]) <= score_tol)
    taken_r, taken_o, ious, diffs = set(), set(), [], []
    for i in np.argsort(-rs, kind='stable'):
        cand = np.where(compatible[i] & (iou[i] >= iou_threshold))[0]
        cand = [j for j in cand if j not in taken_o]
        if cand:
            j = max(cand, key=lambda j: iou[i, j])
            taken_r.add(i), taken_o.add(j), ious.append(iou[i, j]), diffs.append(abs(rs[i] - os_[j]))
    report = MatchReport(len(rs), len(os_), len(ious), min(ious, default=1.0), max(diffs, default=0.0))
    left_r = [i for i in range(len(rs)) if i not in taken_r]
    left_o = [j for j in range(len(os_)) if j not in taken_o]
    for i in list(left_r):  # NMS ties: equally scored, overlapping boxes of one class
        cand = [j for j in left_o if compatible[i, j] and iou[i, j] > nms_iou]
        if cand:
            left_r.remove(i), left_o.remove(cand[0])
            report.nms_ties += 1
    for name, idx, scores in (('reference', left_r, rs), ('runtime', left_o, os_)):
        full = max_per_img is not None and len(scores) >= max_per_img
        cutoffs = [score_thr] + ([float(scores.min())] if full and len(scores) else [])
        for i in idx:
            if any(abs(scores[i] - c) <= score_tol for c in cutoffs):
                report.cutoff_ties += 1
            else:
                boxes, labels = (rb, rl) if name == 'reference' else (ob, ol)
                report.exact_ties += int(np.sum(scores == scores[i]) > 1)
                report.unexplained.append(
                    f'{name} only: label {int(labels[i])} score {scores[i]:.4f} box {np.round(boxes[i], 1).tolist()}'
                )
    return report


def pytorch_detections(detector: nn.Module, image: Tensor) -> Detections:
    """mmdet's ``predict`` on one image ``(1, 3, H, W)`` (as :class:`End2EndDetector` takes it), not rescaled."""
    from mmdet.structures import DetDataSample  # noqa: PLC0415

    h, w = image.shape[-2:]
    shape = (int(h), int(w))
    sample = DetDataSample(
        metainfo=dict(
            img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape, scale_factor=(1.0, 1.0)
        )
    )
    detector.eval()
    with torch.no_grad():
        data = detector.data_preprocessor(dict(inputs=[image[0]], data_samples=[sample]), False)
        result = detector.predict(data['inputs'], data['data_samples'], rescale=False)[0].pred_instances
    return result.bboxes.numpy(), result.scores.numpy(), result.labels.numpy()


def check_runtimes(
    path: str,
    reference_model: nn.Module,
    test_cfg,
    image: Tensor,
    runtimes: Sequence[str] = RUNTIMES,
    iou_threshold: float = 0.9,
    score_tol: float = 1e-4,
) -> Tuple[List[Detections], Dict[str, MatchReport]]:
    """PyTorch's detections of every image of the batch ``image`` ``(B, 3, H, W)`` (mmdet's ``predict`` of
    ``reference_model``, image by image) and, for every runtime, how the end-to-end graph ``path`` (exported for
    that batch size) matches them, all images together (:meth:`MatchReport.merge`). ``test_cfg``: the last stage's
    test config (its NMS IoU, score threshold and ``max_per_img`` define the ties, see :func:`match_detections`),
    e.g. ``End2EndDetector.test_cfg``."""
    reference = [pytorch_detections(reference_model, image[i : i + 1]) for i in range(image.shape[0])]
    rules = dict(
        iou_threshold=iou_threshold,
        score_tol=score_tol,
        nms_iou=float(test_cfg['nms']['iou_threshold']),
        score_thr=float(test_cfg.get('score_thr', 0)),
        max_per_img=int(test_cfg['max_per_img']),
    )
    reports = {}
    for rt in runtimes:
        found = run_detector(path, image, rt)
        reports[rt] = MatchReport.merge([match_detections(r, f, **rules) for r, f in zip(reference, found)])
    return reference, reports


def openvino_model(path: str, threads: Optional[int] = None):
    """The ONNX graph ``path`` compiled by OpenVINO for its CPU plugin in float32 (``INFERENCE_PRECISION_HINT=f32``:
    on CPUs with bf16 units the default precision would be bf16), ``threads`` inference threads (default
    OpenVINO's). Call it with a list of numpy inputs."""
    try:
        import openvino as ov  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(f"the runtime 'openvino' needs the package openvino: {OPENVINO_HINT}") from err
    config: Dict[str, str] = {'INFERENCE_PRECISION_HINT': 'f32'}
    if threads:
        config['INFERENCE_NUM_THREADS'] = str(threads)
    core = ov.Core()
    return core.compile_model(core.read_model(path), 'CPU', config)


def run_detector(path: str, image: Tensor, runtime: str, threads: Optional[int] = None) -> List[Detections]:
    """Run the end-to-end ONNX graph ``path`` on ``image`` ``(B, 3, H, W)`` in ``runtime`` (CPU, float32): the
    detections of each image (a batched graph's empty slots, label ``-1``, dropped)."""
    x = image.detach().cpu().float().numpy()
    if runtime == 'onnxruntime':
        from .onnx import onnx_session  # noqa: PLC0415

        session = onnx_session(path, threads)
        outputs = session.run(None, {session.get_inputs()[0].name: x})
    elif runtime == 'openvino':
        compiled = openvino_model(path, threads)
        result = compiled([x])
        outputs = [result[o] for o in compiled.outputs]
    else:
        raise ValueError(f'runtime={runtime!r} is not allowed: choose from {RUNTIMES}')
    boxes, scores, labels = (np.asarray(o) for o in outputs)
    if labels.ndim == 1:  # a graph exported for one image
        return [(boxes, scores, labels)]
    return [(b[lab >= 0], s[lab >= 0], lab[lab >= 0]) for b, s, lab in zip(boxes, scores, labels)]


def image_steps(cfg) -> list:
    """The steps of ``cfg``'s test pipeline that change pixel values before resizing and that the end-to-end graph
    does not contain (``StandardizeImage``), built: a deployed graph expects its input to have been through them,
    as the config's own inference does. Empty for a config without them."""
    from mmdet.registry import TRANSFORMS  # noqa: PLC0415

    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    while 'dataset' in dataset and 'pipeline' not in dataset:  # dataset wrappers
        dataset = dataset['dataset']
    return [TRANSFORMS.build(dict(t)) for t in dataset.get('pipeline', []) if t.get('type') == 'StandardizeImage']


def load_image(path: str, shape: Sequence[int], steps: Sequence = ()) -> Tuple[Tensor, float]:
    """An image file as the end-to-end input (see :func:`letterbox`), read as mmdet's ``LoadImageFromFile`` does,
    then through ``steps`` (:func:`image_steps` of the config) before the letterbox."""
    import mmcv  # noqa: PLC0415

    try:
        img = mmcv.imread(path)  # BGR uint8
    except (FileNotFoundError, OSError) as err:
        raise FileNotFoundError(f'cannot read an image from {path!r}: {err}') from err
    if img is None:
        raise FileNotFoundError(f'cannot read an image from {path!r}')
    for step in steps:
        img = step(dict(img=img))['img']
    return letterbox(img, shape)


def letterbox(img: np.ndarray, shape: Sequence[int]) -> Tuple[Tensor, float]:
    """``img`` (``(h, w, 3)`` uint8, BGR) as the end-to-end input ``(1, 3, H, W)`` float32 0..255: scaled to fit
    ``H x W`` with its aspect ratio kept (mmcv's bilinear resize), padded with zeros at the bottom and right.
    Returns it and the scale (divide boxes by it for the original image's pixels)."""
    import mmcv  # noqa: PLC0415

    h, w = (int(s) for s in shape)
    scale = min(h / img.shape[0], w / img.shape[1])
    new_w, new_h = max(1, int(img.shape[1] * scale + 0.5)), max(1, int(img.shape[0] * scale + 0.5))
    resized = mmcv.imresize(img, (new_w, new_h))
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = resized
    return torch.from_numpy(canvas).permute(2, 0, 1)[None].float(), scale
