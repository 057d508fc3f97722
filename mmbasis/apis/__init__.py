"""APIs beyond the registered modules: decomposing a plain pretrained ResNet into shared filter bases."""

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
