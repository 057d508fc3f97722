"""Atomic writes (mmbasis/utils/checkpoint_io.py): the umask's permissions, durable renames."""

import os
import os.path as osp
import stat

import pytest
import torch

from mmbasis.engine.hooks.checkpoint_hook import AtomicLocalBackend
from mmbasis.utils import checkpoint_io
from mmbasis.utils.checkpoint_io import atomic_open, atomic_path, current_umask, save_atomic
from tests.helpers import umask


def _mode(path) -> str:
    return oct(os.stat(path).st_mode & 0o777)


def _write_every_way(folder) -> list:
    """One new file through each atomic writer; returns their paths."""
    paths = [osp.join(folder, n) for n in ('open.txt', 'save.pth', 'put.pth', 'put_text', 'path.onnx')]
    with atomic_open(paths[0], 'w') as f:
        f.write('x')
    save_atomic({'w': torch.zeros(2)}, paths[1])
    AtomicLocalBackend().put(b'123', paths[2])
    AtomicLocalBackend().put_text('epoch_1.pth', paths[3])
    with atomic_path(paths[4], suffix='.onnx') as tmp:
        with open(tmp, 'wb') as f:
            f.write(b'onnx')
    return paths


@pytest.mark.parametrize('mask, expected', [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)], ids=['022', '077', '027'])
def test_new_files_get_the_umask_permissions(tmp_path, mask, expected):
    """Issue 21 point 7: mkstemp's 0600 made checkpoints unreadable to other users of a shared work dir."""
    with umask(mask):
        paths = _write_every_way(str(tmp_path))
    assert [_mode(p) for p in paths] == [oct(expected)] * len(paths)
    assert sorted(os.listdir(tmp_path)) == sorted(osp.basename(p) for p in paths)  # no temporary file left


def test_an_existing_file_keeps_its_mode(tmp_path):
    """As ``open(path, 'w')`` does: replacing a file does not change who may read it."""
    path = str(tmp_path / 'last_checkpoint')
    with open(path, 'w') as f:
        f.write('old')
    os.chmod(path, 0o604)
    with umask(0o077):
        with atomic_open(path, 'w') as f:
            f.write('new')
    assert _mode(path) == oct(0o604) and open(path).read() == 'new'


def test_current_umask_is_read_without_changing_it(monkeypatch):
    with umask(0o027):
        assert current_umask() == 0o027
        real_open = open

        def no_proc(path, *args, **kwargs):  # systems without /proc: the set-and-restore fallback
            if str(path).startswith('/proc'):
                raise OSError('no /proc')
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr('builtins.open', no_proc)
        assert current_umask() == 0o027
        monkeypatch.undo()
        assert os.umask(0o027) == 0o027  # still the one set


def test_atomic_open_fsyncs_the_file_then_the_directory_after_the_rename(tmp_path, monkeypatch):
    """Durability after a power loss: the data before the rename, the directory entry after it."""
    dst = str(tmp_path / 'epoch_1.pth')
    synced = []
    real_fsync = os.fsync

    def record(fd):
        kind = 'dir' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'file'
        synced.append((kind, osp.exists(dst)))
        real_fsync(fd)

    monkeypatch.setattr(checkpoint_io.os, 'fsync', record)
    with atomic_open(dst) as f:
        f.write(b'data')
    assert synced[0] == ('file', False) and synced[-1] == ('dir', True)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    dst = str(tmp_path / 'x.pth')
    save_atomic({'a': torch.ones(1)}, dst)
    with pytest.raises(RuntimeError):
        with atomic_open(dst) as f:
            f.write(b'partial')
            raise RuntimeError('disk full')
    assert torch.equal(torch.load(dst, weights_only=True)['a'], torch.ones(1))
    assert os.listdir(tmp_path) == ['x.pth']
