"""BasisStatsHook: the statistics of the shared bases recorded during an mmengine run, without changing the run."""

import json

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmbasis  # noqa: F401  (registers the hooks)
from mmbasis.engine.hooks import BasisStatsHook, read_basis_stats
from mmbasis.models import orthogonality_loss, singular_value_spread
from tests.helpers.toy import ToyDetector


class Images(Dataset):
    """Eight fixed random 32 x 32 images (the same in every run)."""

    def __init__(self) -> None:
        self.x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i])


class AwayFromOrthonormal(Hook):
    """Scales the shared bases once their orthogonal initialisation is done, so that L_orth has a value and a
    gradient (no random number drawn)."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        with torch.no_grad():
            for p in runner.model.backbone.shared_bases().values():
                p.mul_(1.3)


def run(tmp_path, name: str, hooks, iters: int = 4, lr: float = 0.01, accumulate: int = 1, **backbone):
    """Train the toy detector (shared bases away from orthonormal) for ``iters`` iterations; the runner."""
    torch.manual_seed(0)
    model = ToyDetector(norm_eval=False, **backbone)
    runner = Runner(
        model=model,
        work_dir=str(tmp_path / name),
        train_dataloader=dict(
            dataset=Images(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            collate_fn=dict(type='default_collate'),
        ),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9), accumulative_counts=accumulate),
        custom_hooks=[AwayFromOrthonormal(), dict(type='OrthogonalityRegularizerHook', loss_weight=10.0), *hooks],
        default_hooks=dict(checkpoint=None, logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        default_scope='mmdet',
        experiment_name=name,
    )
    runner.train()
    return runner


def test_a_run_with_the_hook_trains_exactly_as_without(tmp_path):
    """Same weights and optimizer state to the bit: the hook reads gradients and weights and draws no random
    number (sampled every iteration, gradients read in every backward, with gradient accumulation)."""
    hook = dict(type='BasisStatsHook', interval=1, record_losses=True)
    plain = run(tmp_path, 'plain', [], accumulate=2)
    recorded = run(tmp_path, 'recorded', [hook], accumulate=2)
    a, b = plain.model.state_dict(), recorded.model.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = plain.optim_wrapper.state_dict()['state'], recorded.optim_wrapper.state_dict()['state']
    assert all(torch.equal(sa[k]['momentum_buffer'], sb[k]['momentum_buffer']) for k in sa)
    assert len(read_basis_stats(str(tmp_path / 'recorded' / 'basis_stats.jsonl'))) == 4 + 2  # iterations + events


def test_the_records_are_the_bases_statistics_and_gradients(tmp_path):
    """lr=0: the weights never change, so every iteration's gradient can be recomputed independently here."""
    runner = run(tmp_path, 'r', [dict(type='BasisStatsHook', interval=2, record_losses=True)], iters=4, lr=0.0)
    records = read_basis_stats(str(tmp_path / 'r' / 'basis_stats.jsonl'))
    assert [r['iter'] for r in records] == [0, 1, 2, 3, 4, 4]
    assert records[0]['event'] == 'before_train' and records[-1]['event'] == 'after_train'
    assert [('l_orth' in r) for r in records] == [True, False, True, False, True, False]  # every 2 iterations
    assert all('losses' in r for r in records[1:-1]) and 'loss_orth' in records[1]['losses']

    model = runner.model
    groups = model.backbone.basis_groups()
    with torch.no_grad():
        loss, max_err = orthogonality_loss(groups)
    assert records[2]['l_orth'] == pytest.approx(float(loss)) and records[2]['l_orth'] > 1e-3
    assert records[2]['orth_max_err'] == pytest.approx(float(max_err))
    for row, g in zip(records[2]['groups'], groups):
        assert row['name'] == g.name and (row['sigma_min'], row['sigma_max']) == singular_value_spread(g)
        assert row['uses'] == 2  # ResNet-18, one basis per stage: both convs of the one shared block
    # the gradient of iteration 2 (batches 2 and 3 of the shuffled epoch), recomputed by hand with the regulariser
    model.zero_grad()
    order = list(runner.train_dataloader.sampler)  # the epoch's order (the sampler's seed, not the global RNG)
    x = torch.stack([runner.train_dataloader.dataset[i]['inputs'] for i in order[2:4]])
    task = model(x, mode='loss')['loss_task']
    (task + 10.0 * orthogonality_loss(groups)[0]).backward()
    for row, g in zip(records[2]['groups'], groups):
        grad = torch.cat([p.grad.flatten() for _, p in g.shared])
        assert row['grad_norm'] == pytest.approx(float(grad.norm()), rel=1e-5)
        assert row['grad_mean'] == pytest.approx(float(grad.abs().mean()), rel=1e-5)
        assert row['grad_max'] == pytest.approx(float(grad.abs().max()), rel=1e-5)
    # the message hub (hence mmengine's logs) carries L_orth
    assert runner.message_hub.get_scalar('train/basis/l_orth').current() == records[4]['l_orth']


def test_a_plain_backbone_records_the_losses_only(tmp_path):
    hook = BasisStatsHook(interval=1, record_losses=True)
    torch.manual_seed(0)
    runner = Runner(
        model=ToyDetector(shared_convs=()),
        work_dir=str(tmp_path / 'plain'),
        train_dataloader=dict(
            dataset=Images(), sampler=dict(type='DefaultSampler'), batch_size=4, collate_fn=dict(type='default_collate')
        ),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        custom_hooks=[hook],
        default_hooks=dict(checkpoint=None),
        default_scope='mmdet',
    )
    runner.train()
    lines = [json.loads(line) for line in (tmp_path / 'plain' / 'basis_stats.jsonl').read_text().splitlines()]
    assert [r['iter'] for r in lines] == [0, 1, 2, 2] and not any('l_orth' in r for r in lines)
    assert all('loss_task' in r['losses'] for r in lines[1:3])


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(interval=0), 'interval=0 is not allowed'),
        (dict(record_losses='yes'), "record_losses='yes' is not allowed"),
        (dict(out_file='/tmp/x.jsonl'), "out_file='/tmp/x.jsonl' is not allowed"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        BasisStatsHook(**kwargs)
