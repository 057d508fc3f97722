"""FiniteLossHook: which values count as a non-finite loss, and where it stops (in-process, toy model)."""

import math
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub

from mmbasis.engine import FiniteLossHook, NonFiniteLossError
from mmbasis.engine.hooks.finite_loss_hook import non_finite_terms
from tests.helpers.toy import ToyDetector, toy_batch

INF, NAN = float('inf'), float('nan')


@pytest.mark.parametrize(
    'losses, bad',
    [
        (dict(loss_a=torch.tensor(1.0), acc=torch.tensor(NAN)), {}),  # only keys with 'loss' are losses
        (dict(loss_a=torch.tensor(1.0), loss_b=torch.tensor([2.0, NAN])), {'loss_b': NAN}),
        (dict(loss_a=[torch.tensor(1.0), torch.tensor(INF)]), {'loss_a': INF}),  # per-level lists, summed
        (dict(loss_a=torch.tensor(3e38), loss_b=torch.tensor(3e38)), {'loss': INF}),  # finite terms, total overflows
        (dict(loss_orth=torch.tensor(-INF)), {'loss_orth': -INF}),
    ],
)
def test_non_finite_terms(losses, bad):
    got = non_finite_terms(losses)
    assert set(got) == set(bad)
    for k, v in bad.items():
        assert math.isnan(got[k]) if math.isnan(v) else got[k] == v


def test_stops_inside_the_forward():
    """Raised by the forward itself, i.e. before mmengine's backward and optimizer step."""
    model = ToyDetector()
    hub = MessageHub.get_instance('finite_loss_hook_test')
    runner = SimpleNamespace(model=model, iter=41, epoch=2, message_hub=hub)
    hook = FiniteLossHook()
    hook.before_train(runner)
    assert 'loss_task' in model(**toy_batch(2), mode='loss')  # finite: passes through
    model.backbone.conv1.weight.data[0, 0, 0, 0] = NAN
    with pytest.raises(NonFiniteLossError, match=r'iteration 42 \(epoch 3\): loss_task=nan.*no checkpoint'):
        model(**toy_batch(2), mode='loss')
    hook.after_train(runner)
    assert 'loss_task' in model(**toy_batch(2), mode='loss')  # removed after training: no check any more


def test_refuses_to_save_a_poisoned_state():
    hook = FiniteLossHook()
    runner = SimpleNamespace(iter=7)
    hook.before_save_checkpoint(runner, dict(state_dict=dict(w=torch.ones(2))))  # finite: fine
    with pytest.raises(NonFiniteLossError, match='refusing to write a checkpoint at iteration 7.*w'):
        hook.before_save_checkpoint(runner, dict(state_dict=dict(w=torch.tensor([1.0, INF]))))
    with pytest.raises(TypeError, match='check_params_before_save=1'):
        FiniteLossHook(check_params_before_save=1)
