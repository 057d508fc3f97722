"""APIs beyond the registered modules: decomposing a plain pretrained ResNet into shared filter bases,
choosing deploy forms by measurement, ONNX export (``mmbasis.apis.onnx_export``, optional packages)."""

from .decompose import (
    PLAIN_LAYOUTS,
    calibration_batch,
    decompose_checkpoint,
    decompose_resnet,
    extract_plain_backbone,
    format_report,
    load_plain_checkpoint,
    target_backbone_cfg,
)
from .deploy_calibration import calibrate_deploy_forms, format_choices

__all__ = [
    'PLAIN_LAYOUTS',
    'calibrate_deploy_forms',
    'calibration_batch',
    'decompose_checkpoint',
    'decompose_resnet',
    'extract_plain_backbone',
    'format_choices',
    'format_report',
    'load_plain_checkpoint',
    'target_backbone_cfg',
]
