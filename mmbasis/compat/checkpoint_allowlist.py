"""Resuming mmengine checkpoints on torch >= 2.6 with ``weights_only`` kept on.

For: mmengine 0.10.7 (``torch.load`` without ``weights_only``) on torch >= 2.6 (default ``weights_only=True``).
Remove when: mmengine loads its own checkpoints with ``weights_only=True`` and an allowlist of its own (its
``HistoryBuffer`` pickled without ``builtins.getattr``), or mmbasis requires such an mmengine; the test
``tests/test_compat/test_checkpoint_allowlist.py`` then passes without :func:`install_checkpoint_allowlist`.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then defaults to
``weights_only=True`` and refuses full training checkpoints, because besides tensors they pickle the
message hub's log history. ``torch.serialization.get_unsafe_globals_in_checkpoint`` on a checkpoint written
by our runner (demo config, mmengine 0.10.7, numpy 2.x) lists exactly::

    mmengine.logging.history_buffer.HistoryBuffer          (one per logged scalar)
    numpy.ndarray, numpy._core.multiarray._reconstruct     (HistoryBuffer._log_history/_count_history)
    numpy.dtype, numpy._core.multiarray.scalar             (numpy scalars in the runtime info)
    builtins.getattr                                       (see below)

``builtins.getattr`` comes from ``HistoryBuffer.__getstate__``: it stores the class-wide registry of
statistics methods (``{'min': HistoryBuffer.min, ...}``), and pickle protocol 2 writes a method of a class
as ``getattr(HistoryBuffer, 'min')``. ``HistoryBuffer.__setstate__`` merges the loaded registry into the
class and ``HistoryBuffer.statistics(name)`` later *calls* its entries, so allowlisting the real ``getattr``
would let a crafted checkpoint plant any attribute reachable from the allowlisted objects there (e.g.
``getattr(getattr, '__self__')`` is the ``builtins`` module). Instead, ``builtins.getattr`` is mapped to
:func:`history_buffer_getattr`, which resolves only mmengine's four default statistics methods.

Instead of turning the safety off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` or ``weights_only=False``),
``import mmbasis`` installs this allowlist with ``torch.serialization.add_safe_globals``, so mmdet's own
``tools/train.py --resume`` works too (every mmbasis config imports mmbasis through ``custom_imports``)
and any other global in a checkpoint is still refused.
"""

import pickle
from typing import Any, List, Tuple, Union

import numpy as np
import torch

_INSTALLED = False

#: The statistics methods mmengine's ``HistoryBuffer`` registers by default (``_set_default_statistics``).
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(owner: Any, name: Any) -> Any:
    """Stand-in for ``builtins.getattr`` inside ``torch.load(weights_only=True)``.

    Returns ``getattr(owner, name)`` only for ``owner`` = mmengine's ``HistoryBuffer`` class and ``name`` one
    of :data:`HISTORY_BUFFER_METHODS`; raises ``pickle.UnpicklingError`` for anything else, so a checkpoint
    cannot reach other attributes (module globals, builtins, bound methods) through ``getattr``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and isinstance(name, str) and name in HISTORY_BUFFER_METHODS:
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'weights_only load: getattr({owner!r}, {name!r}) is not allowed; mmbasis allows getattr only for '
        f'HistoryBuffer.{{{", ".join(HISTORY_BUFFER_METHODS)}}} (mmengine log history). Load the file with '
        'weights_only=False only if you trust it.'
    )


def checkpoint_safe_globals() -> List[Union[object, Tuple[object, str]]]:
    """The globals a full mmengine 0.10.7 training checkpoint needs beyond tensors.

    Items are in the form ``torch.serialization.add_safe_globals`` takes: an object, or ``(object, name)``
    where ``name`` is the global's full path as it appears in the pickle.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    # numpy's concrete dtype classes (numpy.dtypes.Float64DType, ...): pickled when a dtype object is
    # stored by type; harmless classes without side effects on construction.
    dtype_classes = [
        type(np.dtype(t))
        for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_)
    ]
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        multiarray._reconstruct,
        multiarray.scalar,
        *dtype_classes,
        (history_buffer_getattr, 'builtins.getattr'),
    ]


def globals_needing_allowlist(path: str) -> List[str]:
    """Every global in the checkpoint ``path`` that torch's own weights-only allowlist lacks.

    Unlike ``torch.serialization.get_unsafe_globals_in_checkpoint`` alone, the answer does not depend on
    what has been allowlisted in this process (e.g. by ``import mmbasis``): the user allowlist is cleared
    for the query and restored afterwards. Nothing is unpickled.
    """
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    finally:
        torch.serialization.add_safe_globals(saved)


def install_checkpoint_allowlist() -> None:
    """Allowlist :func:`checkpoint_safe_globals` for ``torch.load(weights_only=True)`` (idempotent).

    A no-op on torch < 2.6, which loads with ``weights_only=False`` by default (and whose
    ``add_safe_globals`` does not take ``(object, name)`` pairs).
    """
    global _INSTALLED
    if _INSTALLED or torch.__version__ < '2.6':
        return
    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    _INSTALLED = True
