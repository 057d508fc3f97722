"""The weights_only allowlist of mmbasis: mmengine's log history loads, nothing else does."""

import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

import mmbasis  # noqa: F401  (installs the allowlist)
from mmbasis.compat.checkpoint_allowlist import (
    HISTORY_BUFFER_METHODS,
    globals_needing_allowlist,
    history_buffer_getattr,
)


def _save(obj, tmp_path, name='ckpt.pth') -> str:
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


def test_message_hub_state_round_trips_with_weights_only(tmp_path):
    hub = MessageHub.get_instance('mmbasis-test-checkpoint-compat')
    for i in range(3):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
    hub.update_info('metric', np.float64(0.25))
    state = dict(state_dict={'w': torch.ones(2)}, message_hub=hub.state_dict(), meta=dict(epoch=1, iter=3))
    path = _save(state, tmp_path)
    needed = set(globals_needing_allowlist(path))
    assert {'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr', 'numpy.ndarray'} <= needed
    assert not torch.serialization.get_unsafe_globals_in_checkpoint(path)  # all allowlisted by mmbasis
    assert len(torch.serialization.get_safe_globals()) >= len(needed)  # the query restored the allowlist
    loaded = torch.load(path, weights_only=True)
    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    np.testing.assert_allclose(buf.data[0], [1.0, 0.5, 1 / 3])
    assert buf.statistics('mean') == pytest.approx((1.0 + 0.5 + 1 / 3) / 3)
    assert loaded['message_hub']['runtime_info']['metric'] == 0.25
    # the loaded registry holds mmengine's own methods, nothing planted
    assert all(HistoryBuffer._statistics_methods[m] is getattr(HistoryBuffer, m) for m in HISTORY_BUFFER_METHODS)


class _RunsCommand:
    """Pickles as ``os.system(cmd)``: what a malicious checkpoint would contain."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


class _GetAttr:
    """Pickles as ``getattr(owner, name)``."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


def test_unknown_globals_are_refused_and_not_executed(tmp_path):
    marker = tmp_path / 'pwned'
    path = _save({'state_dict': {}, 'payload': _RunsCommand(f'touch {marker}')}, tmp_path)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        torch.load(path, weights_only=True)
    assert not marker.exists()
    path = _save({'payload': pickle.PickleError('not allowlisted')}, tmp_path, 'other.pth')
    with pytest.raises(pickle.UnpicklingError, match='PickleError'):
        torch.load(path, weights_only=True)


@pytest.mark.parametrize(
    'owner, name',
    [
        (HistoryBuffer, '__init__'),  # a method that is not a statistics method
        (HistoryBuffer, 'update'),
        (getattr, '__self__'),  # the builtins module, the way to eval/exec/__import__
        (np.ndarray, 'tofile'),  # another allowlisted class
    ],
)
def test_getattr_is_limited_to_history_buffer_statistics(tmp_path, owner, name):
    path = _save({'payload': _GetAttr(owner, name)}, tmp_path)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        torch.load(path, weights_only=True)


def test_history_buffer_getattr_directly():
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        history_buffer_getattr(HistoryBuffer(), 'mean')  # instances (bound methods) are not allowed either
