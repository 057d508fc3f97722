"""ONNX export of deploy-mode backbones and detectors, checked in onnxruntime.

A shared-basis backbone exports after :meth:`switch_to_deploy` (plain convolutions only, see the README's
deploy section). A detector exports end to end (:class:`~mmbasis.deploy.end2end.End2EndDetector`: image in;
boxes, scores and labels out) or as its *network* (:class:`TensorNetwork`, mmdet's ``mode='tensor'`` of a
single-stage detector: backbone, neck and head outputs flattened to a tuple of tensors, decoding and NMS left to
the caller). The export uses torch's ``torch.export``-based exporter (``dynamo=True``); the optional packages
come with ``pip install -r requirements/deploy.txt`` (``mmbasis[deploy]``).
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..utils.checkpoint_io import atomic_path

ONNX_HINT = 'install the optional deploy packages: pip install -r requirements/deploy.txt (or mmbasis[deploy])'


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(f'ONNX export needs the package {module!r}: {ONNX_HINT}') from err


class ExportError(RuntimeError):
    """torch's exporter could not export the model (the message names the model and the innermost cause)."""


def _flatten(outputs) -> Tuple[Tensor, ...]:
    if isinstance(outputs, Tensor):
        return (outputs,)
    flat: List[Tensor] = []
    for out in outputs:
        flat.extend(_flatten(out))
    return tuple(flat)


class TensorNetwork(nn.Module):
    """``model`` in mmdet's ``tensor`` mode with its (nested) outputs flattened to one tuple of tensors.

    Shapes: ``(N, 3, H, W)`` -> for a detector, e.g. SSD: every level's class scores, then every level's box
    deltas; for a backbone: its output feature maps.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if hasattr(model, 'roi_head') or getattr(model, 'with_rpn', False):
            raise ValueError(
                f'{type(model).__name__} has no tensor mode to export: a two-stage detector needs its proposals (RPN '
                'decoding and NMS) before the RoI head runs; export it end to end instead (boxes, scores, labels)'
            )
        self.model = model

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        is_detector = hasattr(self.model, 'data_preprocessor') and hasattr(self.model, '_forward')
        return _flatten(self.model._forward(x) if is_detector else self.model(x))


def export_onnx(model: nn.Module, example: Tensor, path: str, opset: int = 18) -> str:
    """Export ``model`` (put in eval mode) for inputs shaped like ``example`` to ``path``, atomically.

    ``model``: an :class:`~mmbasis.deploy.end2end.End2EndDetector` (inputs ``image``; outputs ``boxes``, ``scores``,
    ``labels``), a :class:`TensorNetwork`, or a module to wrap in one. The graph is written to a temporary file
    beside ``path`` and renamed over it only when the export has succeeded, so an existing file is never left
    half-written; the file gets the permissions a plain write would give it (``0o666`` minus the umask, or an
    existing file's own). Returns ``path``.
    """
    from .end2end import End2EndDetector  # noqa: PLC0415
    from .ops import onnx_translations  # noqa: PLC0415

    if not path.endswith('.onnx'):
        raise ValueError(f'the ONNX file name must end with .onnx, got {path!r}')
    _require('onnx')
    _require('onnxscript')
    model.eval()
    names = {}
    if isinstance(model, End2EndDetector):
        net, names = model, dict(input_names=['image'], output_names=['boxes', 'scores', 'labels'])
    else:
        net = model if isinstance(model, TensorNetwork) else TensorNetwork(model)
    with atomic_path(path, suffix='.onnx') as tmp:  # the umask's permissions, fsynced, renamed
        try:
            with torch.no_grad():
                program = torch.onnx.export(
                    net,
                    (example,),
                    dynamo=True,
                    opset_version=opset,
                    verbose=False,
                    custom_translation_table=onnx_translations(),
                    **names,
                )
        except Exception as err:  # torch.export's errors are pages long: name the model and the root cause
            cause = err
            while cause.__cause__ is not None:
                cause = cause.__cause__
            inner = getattr(net, 'model', None)
            what = type(getattr(net, 'detector', net) if inner is None else inner).__name__
            first = (str(cause).strip().splitlines() or [''])[0]
            raise ExportError(f"torch's ONNX exporter cannot export {what}: {type(cause).__name__}: {first}") from err
        program.save(tmp)
    return path


def onnx_session(path: str, threads: Optional[int] = None, spin: bool = True):
    """An onnxruntime CPU session of ``path`` (``threads``: intra-op threads, default onnxruntime's).

    ``spin=False`` stops the session's idle worker threads from busy-waiting after a run. Keep the default for a
    process that serves one session; turn it off when several sessions (or PyTorch) take turns in one process, as
    the benchmark's interleaved pairs do: otherwise one side's spinning threads take cores from the other.
    """
    ort = _require('onnxruntime')
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.add_session_config_entry('session.inter_op.allow_spinning', '0')
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def run_onnx(session, example: Tensor) -> List[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: example.detach().cpu().numpy()})


def max_relative_error(ours: Sequence[np.ndarray], reference: Sequence[Tensor]) -> float:
    """max over outputs of max|ours - reference| / max|reference| (``inf`` when the output counts differ)."""
    if len(ours) != len(reference):
        return float('inf')
    errors = []
    for o, ref in zip(ours, reference):
        r = ref.detach().cpu().numpy()
        if o.shape != r.shape:
            return float('inf')
        errors.append(float(np.abs(o - r).max() / max(float(np.abs(r).max()), 1e-12)))
    return max(errors)


def verify_onnx(path: str, model: nn.Module, example: Tensor) -> float:
    """Run ``path`` in onnxruntime and PyTorch's ``model`` on ``example``: their max relative error."""
    net = model if isinstance(model, TensorNetwork) else TensorNetwork(model)
    net.eval()
    with torch.no_grad():
        reference = net(example)
    return max_relative_error(run_onnx(onnx_session(path), example), reference)
