"""Resuming mmengine checkpoints on torch >= 2.6 with ``weights_only`` kept on.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then defaults to
``weights_only=True`` and refuses full training checkpoints because they pickle a few non-tensor
objects: the message hub's ``HistoryBuffer`` and numpy arrays/scalars/dtypes in the log history
(reached through ``builtins.getattr``).
Instead of turning the safety off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` or ``weights_only=False``),
``import mmbasis`` allowlists exactly these globals with ``torch.serialization.add_safe_globals``, so
mmdet's own ``tools/train.py --resume`` works too and any other global in a checkpoint is still refused.
"""
from typing import List

import numpy as np
import torch

_INSTALLED = False


def checkpoint_safe_globals() -> List[object]:
    """The globals a full mmengine 0.10.7 training checkpoint needs beyond tensors."""
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
                                          np.int8, np.uint8, np.bool_)]
    # builtins.getattr: numpy 2 pickles some scalars/dtypes of the log history through getattr; the
    # weights-only unpickler still calls only allowlisted globals, so it cannot reach anything else.
    return [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar, getattr, *dtypes]


def install_checkpoint_allowlist() -> None:
    """Allowlist :func:`checkpoint_safe_globals` for ``torch.load(weights_only=True)`` (idempotent)."""
    global _INSTALLED
    if _INSTALLED or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    _INSTALLED = True
