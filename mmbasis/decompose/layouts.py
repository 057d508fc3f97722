"""Source checkpoints of a decomposition (the layouts of plain ResNet weights it reads) and the decomposed
checkpoint it writes.
"""

import os.path as osp
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple

from torch import Tensor

from ..utils import checkpoint_io
from ..utils.checkpoint_io import CheckpointFormatError, save_atomic
from ..utils.misc import brief
from .calibration import calibration_batch
from .surgery import decompose_resnet
from .targets import target_backbone_cfg

#: Checkpoint layouts :func:`extract_plain_backbone` recognises (name -> how it is recognised).
PLAIN_LAYOUTS: Dict[str, str] = {
    'mmdet-detector': "mmdet detector: 'backbone.*' keys plus neck/head keys (e.g. 'neck.*', 'rpn_head.*')",
    'mm-classifier': "mmpretrain/mmcls classifier: 'backbone.*' keys plus 'head.*' keys",
    'mm-backbone': "mmdet/mmpretrain backbone: ResNet keys ('conv1.weight', 'layer1.0.conv1.weight', ...) with "
    "no prefix, or all under 'backbone.'",
    'torchvision': "torchvision ResNet: ResNet keys with no prefix plus the classifier 'fc.weight'/'fc.bias'",
}
_RESNET_KEY = 'layer1.0.conv1.weight'


def _accepted() -> str:
    return '; '.join(f'{k}: {v}' for k, v in PLAIN_LAYOUTS.items()) + " (each optionally with 'module.' prefixes)"


def extract_plain_backbone(state_dict: Mapping[str, Tensor]) -> Tuple['OrderedDict[str, Tensor]', str]:
    """The ResNet backbone part of a state dict of any layout in :data:`PLAIN_LAYOUTS`.

    Args:
        state_dict: a checkpoint's state dict (``module.`` prefixes are removed).

    Returns:
        ``(backbone_state_dict, layout)``: keys relative to the backbone (``conv1.weight``, ``layer1.0.bn1.bias``,
        ...), the classifier/neck/heads dropped; ``layout`` is a key of :data:`PLAIN_LAYOUTS`.

    Raises:
        CheckpointFormatError: no ResNet backbone in a known layout; the message lists what was found.
    """
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise CheckpointFormatError(
            f'expected a non-empty state dict, found {type(state_dict).__name__} '
            f'{"(empty)" if isinstance(state_dict, Mapping) else ""}; accepted: {_accepted()}'
        )
    sd = checkpoint_io.strip_module_prefix(state_dict)
    tops = sorted({k.split('.', 1)[0] for k in sd})
    if 'backbone' in tops:
        others = [t for t in tops if t not in ('backbone', 'data_preprocessor')]
        layout = (
            'mm-backbone'
            if not others
            else 'mm-classifier'
            if set(others) <= {'head', 'neck'} and 'head' in others
            else 'mmdet-detector'
        )
        backbone = OrderedDict((k[len('backbone.') :], v) for k, v in sd.items() if k.startswith('backbone.'))
        if _RESNET_KEY not in backbone:
            raise CheckpointFormatError(
                f"the 'backbone.' keys are not a ResNet (no 'backbone.{_RESNET_KEY}'); found backbone keys "
                f'{brief(backbone)}'
            )
        return backbone, layout
    if _RESNET_KEY in sd:
        if 'fc.weight' in sd:
            return OrderedDict((k, v) for k, v in sd.items() if not k.startswith('fc.')), 'torchvision'
        return sd, 'mm-backbone'
    raise CheckpointFormatError(
        f'no plain ResNet backbone found: the keys are {brief(sd)} (top-level names '
        f'{brief(tops)}); accepted layouts: {_accepted()}'
    )


def load_plain_checkpoint(path: str) -> Tuple['OrderedDict[str, Tensor]', str]:
    """Load ``path`` with ``torch.load(weights_only=True)`` -> ``(backbone_state_dict, layout)``.

    Raises:
        FileNotFoundError: ``path`` is missing.
        CheckpointFormatError: not a PyTorch checkpoint, or no plain ResNet in it (see :func:`extract_plain_backbone`).
    """
    state_dict, _ = checkpoint_io.split_checkpoint(checkpoint_io.load_weights_only(path), path)
    try:
        return extract_plain_backbone(state_dict)
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f'{str(path)!r}: {e}') from None


def decompose_checkpoint(
    src: str,
    dst: str,
    arch: Optional[str] = None,
    backbone_cfg: Optional[Mapping] = None,
    images: Optional[str] = None,
    num_images: int = 8,
    img_size: int = 224,
    als_iters: int = 25,
    seed: int = 0,
) -> dict:
    """Read a plain ResNet checkpoint ``src``, decompose it, write ``dst`` atomically; return the written ``meta``.

    ``dst`` holds ``dict(state_dict=..., meta=...)`` with keys relative to the backbone (use it as the backbone's
    ``init_cfg=dict(type='Pretrained', checkpoint=dst)``) and ``meta`` of plain Python types: ``report`` (see
    :func:`decompose_resnet`), ``backbone_cfg``, ``arch``, ``source``, ``source_layout``, ``calibration``, ...
    Target: ``arch`` (a paper name) or ``backbone_cfg`` (see :func:`target_backbone_cfg`); calibration inputs:
    see :func:`calibration_batch`.

    Raises:
        FileNotFoundError: ``src`` or ``images`` missing. ValueError: ``dst`` is ``src`` or a directory, a bad
        target or option. CheckpointFormatError: ``src`` holds no plain ResNet fitting the target.
    """
    cfg = target_backbone_cfg(arch, backbone_cfg)
    if not osp.isfile(src):
        raise FileNotFoundError(f'source checkpoint {str(src)!r} does not exist or is not a file')
    if checkpoint_io.same_file(src, dst):
        raise ValueError(
            f'DST {str(dst)!r} is the source checkpoint: choose another output path (SRC is never overwritten)'
        )
    if osp.isdir(dst):
        raise ValueError(f'DST {str(dst)!r} is a directory: give a file name, e.g. {osp.join(dst, "shared.pth")!r}')
    inputs, calibration = calibration_batch(images, num_images, img_size, seed, cfg.get('in_channels', 3))
    plain_sd, layout = load_plain_checkpoint(src)
    state_dict, report = decompose_resnet(plain_sd, cfg, inputs, als_iters)
    from ..version import __version__

    meta = dict(
        report=report,
        backbone_cfg=cfg,
        arch=arch,
        source=osp.basename(str(src)),
        source_layout=layout,
        calibration=calibration,
        als_iters=als_iters,
        keys='relative to the backbone: use init_cfg=dict(type="Pretrained", checkpoint=...) on the backbone',
        converter='mmbasis tools/model_converters/plain_to_shared.py',
        mmbasis_version=__version__,
    )
    save_atomic(dict(state_dict=state_dict, meta=meta), dst, protect=src)
    return meta
