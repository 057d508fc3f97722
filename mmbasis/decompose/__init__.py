"""Warm start from a plain pretrained ResNet: decompose it into a :class:`~mmbasis.models.SharedBasisResNet` (no
ImageNet run).

* :mod:`.fits`: the pure tensor fits (orthonormal shared and unique bases; whole shared convolutions);
* :mod:`.targets`: the target backbone and the plain ResNet of its geometry, which the source must fit;
* :mod:`.surgery`: the fits written into the target's state dict, BatchNorms rewritten (:func:`decompose_resnet`);
* :mod:`.calibration`: the calibration batch, BatchNorm calibration, per-stage output errors;
* :mod:`.layouts`: the checkpoint layouts read (mmdet, mmpretrain, torchvision) and the checkpoint written
  (:func:`decompose_checkpoint`, what ``tools/model_converters/plain_to_shared.py`` runs);
* :mod:`.report`: the report and its table.
"""

from .calibration import calibration_batch
from .layouts import PLAIN_LAYOUTS, decompose_checkpoint, extract_plain_backbone, load_plain_checkpoint
from .report import format_report
from .surgery import decompose_resnet
from .targets import target_backbone_cfg

__all__ = [
    'PLAIN_LAYOUTS',
    'calibration_batch',
    'decompose_checkpoint',
    'decompose_resnet',
    'extract_plain_backbone',
    'format_report',
    'load_plain_checkpoint',
    'target_backbone_cfg',
]
