"""Reading checkpoints with ``weights_only=True`` and writing them atomically (for the converter tools)."""
import os
import os.path as osp
import tempfile
from typing import Any, Optional

import torch


class CheckpointFormatError(ValueError):
    """A file is not a checkpoint of the expected kind (message says what was expected and found)."""


def load_weights_only(path: str) -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with clear errors.

    Tensors saved on a GPU are mapped to the CPU. Full mmengine training checkpoints load too once
    ``import mmbasis`` has installed its allowlist (:mod:`mmbasis.utils.checkpoint_compat`).

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        CheckpointFormatError: the file is not a PyTorch file, or it needs globals outside the
            ``weights_only`` allowlist (arbitrary pickled objects are never executed).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'checkpoint path must be a str or os.PathLike, got {type(path).__name__}')
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file {str(path)!r} does not exist or is not a file')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for foreign files
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # torch's weights_only refusal puts the offending global on a later line
        reason = next((ln for ln in lines if 'Unsupported global' in ln), lines[0] if lines else '')
        raise CheckpointFormatError(
            f'{str(path)!r} is not a PyTorch checkpoint that loads with torch.load(weights_only=True) '
            f'({type(e).__name__}: {reason[:300]})') from e


def same_file(a: str, b: str) -> bool:
    """True when paths ``a`` and ``b`` name the same file (existing or not)."""
    if osp.exists(a) and osp.exists(b):
        return osp.samefile(a, b)
    return osp.realpath(a) == osp.realpath(b)


def save_atomic(obj: Any, dst: str, protect: Optional[str] = None) -> None:
    """``torch.save(obj)`` to a temporary file next to ``dst``, then ``os.replace`` it onto ``dst``.

    A crash or a full disk never leaves a truncated ``dst``. The parent directory is created if needed.

    Args:
        obj: what to save.
        dst (str): destination path.
        protect (str, optional): a path that must never be overwritten (the source checkpoint).

    Raises:
        ValueError: ``dst`` is ``protect`` or a directory.
    """
    if protect is not None and same_file(dst, protect):
        raise ValueError(f'refusing to overwrite the source checkpoint {str(protect)!r}: choose another output path')
    if osp.isdir(dst):
        raise ValueError(f'output path {str(dst)!r} is a directory; give a file name (e.g. {osp.join(dst, "x.pth")})')
    parent = osp.dirname(osp.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(dst)}.', suffix='.tmp', dir=parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
