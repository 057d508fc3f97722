"""Reading checkpoints with ``weights_only=True``, finding their state dict, and writing them atomically."""

import os
import os.path as osp
import stat
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from typing import IO, Any, Iterator, Mapping, Optional, Tuple

import torch
from torch import Tensor


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
            f'({type(e).__name__}: {reason[:300]})'
        ) from e


def load_meta(path: str) -> dict:
    """The ``meta`` dict of an mmengine checkpoint (``{}`` when it has none), without reading its tensors.

    The file is memory-mapped (``torch.load(mmap=True)``; tensors are not read from disk unless touched), so reading
    the meta of a large checkpoint costs little. Files in torch's legacy (non-zip) format are read whole. Raises
    what :func:`load_weights_only` raises.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'checkpoint path must be a str or os.PathLike, got {type(path).__name__}')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception:  # not a zip-format file (or not a checkpoint at all): the full load says which
        checkpoint = load_weights_only(path)
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) else {}


def same_file(a: str, b: str) -> bool:
    """True when paths ``a`` and ``b`` name the same file (existing or not)."""
    if osp.exists(a) and osp.exists(b):
        return osp.samefile(a, b)
    return osp.realpath(a) == osp.realpath(b)


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it.

    Linux reports it in ``/proc/self/status``; elsewhere it is read the classic way (``os.umask`` set and
    restored), which another thread creating a file at that very moment could observe.
    """
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(dst: str) -> int:
    """The permission bits ``open(dst, 'w')`` would leave: an existing file's own, else ``0o666 & ~umask``."""
    try:
        st = os.stat(dst)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~current_umask()


def fsync_dir(path: str) -> None:
    """Flush directory ``path`` itself to disk, so that a rename or a new entry in it survives a power loss."""
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_durably(tmp: str, dst: str) -> None:
    """``os.replace(tmp, dst)`` (same directory), then flush the directory so the rename survives a power loss."""
    os.replace(tmp, dst)
    fsync_dir(osp.dirname(osp.abspath(dst)))


def _make_temp(dst: str, suffix: str) -> Tuple[int, str]:
    """``mkstemp`` beside ``dst`` (parent created), chmod-ed to :func:`new_file_mode` instead of mkstemp's 0600."""
    parent = osp.dirname(osp.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    mode = new_file_mode(dst)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(dst)}.', suffix=suffix, dir=parent)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        os.remove(tmp)
        raise
    return fd, tmp


@contextmanager
def atomic_path(dst: str, suffix: str = '.tmp') -> Iterator[str]:
    """A temporary file name beside ``dst`` for writers that want a path (e.g. ONNX export).

    When the block succeeds the file is fsynced and renamed onto ``dst`` with :func:`atomic_open`'s guarantees;
    when it raises the temporary file is removed. Temporary names are ``.<name>.<random><suffix>``.
    """
    fd, tmp = _make_temp(dst, suffix)
    os.close(fd)
    try:
        yield tmp
        _fsync_file(tmp)
        _replace_durably(tmp, dst)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_open(dst: str, mode: str = 'wb') -> Iterator[IO]:
    """Open a temporary file next to ``dst``; on success fsync it, rename it onto ``dst``, fsync the directory.

    A crash, a kill, a power loss or a full disk never leaves a truncated ``dst``: readers see the old file or
    the new one, and once the block has returned the new one survives a power loss. The file gets the
    permissions a plain ``open(dst, 'w')`` would leave (:func:`new_file_mode`: an existing ``dst``'s own, else
    ``0o666`` minus the umask), not ``mkstemp``'s 0600. On an exception the temporary file is removed.
    Temporary names are ``.<name>.<random>.tmp``.
    """
    fd, tmp = _make_temp(dst, '.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _replace_durably(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def save_atomic(obj: Any, dst: str, protect: Optional[str] = None) -> None:
    """``torch.save(obj)`` to ``dst`` through :func:`atomic_open` (never a truncated file).

    Args:
        obj: what to save.
        dst (str): destination path (its parent directory is created if needed).
        protect (str, optional): a path that must never be overwritten (the source checkpoint).

    Raises:
        ValueError: ``dst`` is ``protect`` or a directory.
    """
    if protect is not None and same_file(dst, protect):
        raise ValueError(f'refusing to overwrite the source checkpoint {str(protect)!r}: choose another output path')
    if osp.isdir(dst):
        raise ValueError(f'output path {str(dst)!r} is a directory; give a file name (e.g. {osp.join(dst, "x.pth")})')
    with atomic_open(dst) as f:
        torch.save(obj, f)


def strip_module_prefix(state_dict: Mapping[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """Remove the ``module.`` prefix that ``DataParallel``/DDP add (only when every key has it)."""
    keys = list(state_dict)
    if keys and all(k.startswith('module.') for k in keys):
        return OrderedDict((k[len('module.') :], v) for k, v in state_dict.items())
    return OrderedDict(state_dict)


def split_checkpoint(checkpoint: Any, path: str) -> Tuple['OrderedDict[str, Tensor]', dict]:
    """``(state_dict, meta)`` of a loaded mmengine checkpoint (``dict(state_dict=..., meta=...)``) or plain state dict.

    The ``module.`` prefix is stripped. Raises :class:`CheckpointFormatError` naming ``path`` and what it
    found for anything else.
    """
    if isinstance(checkpoint, Mapping) and 'state_dict' in checkpoint:
        sd, meta = checkpoint['state_dict'], checkpoint.get('meta') or {}
    elif isinstance(checkpoint, Mapping) and checkpoint and all(isinstance(v, Tensor) for v in checkpoint.values()):
        sd, meta = checkpoint, {}
    else:
        found = f'keys {list(checkpoint)[:6]}' if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointFormatError(
            f'{str(path)!r} is not an mmengine/mmdet checkpoint: expected a dict with '
            f"'state_dict' or a plain state dict, found {found}"
        )
    if not isinstance(meta, Mapping):
        raise CheckpointFormatError(f"{str(path)!r}: 'meta' must be a dict, got {type(meta).__name__}")
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise CheckpointFormatError(f"{str(path)!r}: 'state_dict' must map names to tensors")
    return strip_module_prefix(sd), dict(meta)
