"""The one state-dict mismatch report (mmbasis.utils.state_dict) that every loader of ours words its errors with."""

import torch

from mmbasis.utils.state_dict import compare_keys, shapes_of


def test_missing_unexpected_and_mis_shaped_keys_are_each_named():
    expected = {'a.weight': torch.zeros(2, 3), 'b.weight': torch.zeros(4), 'bn.num_batches_tracked': torch.tensor(0)}
    given = {'a.weight': torch.zeros(3, 3), 'c.weight': torch.zeros(1)}
    fit = compare_keys(expected, given)
    assert fit and fit.missing == ('b.weight',) and fit.unexpected == ('c.weight',)  # the BN counter may be missing
    assert fit.shapes == (('a.weight', (3, 3), (2, 3)),)
    assert fit.problems() == [
        'missing keys: b.weight',
        'unexpected keys: c.weight',
        'shape mismatches (checkpoint vs model): a.weight (3, 3) vs (2, 3)',
    ]
    assert compare_keys(expected, given, optional=()).missing == ('b.weight', 'bn.num_batches_tracked')
    assert not compare_keys(expected, dict(expected))


def test_words_prefixes_source_names_and_limits():
    expected = shapes_of({f'k{i}': torch.zeros(1) for i in range(10)})  # shapes stand for tensors
    fit = compare_keys(expected, {'k0': torch.zeros(2), 'old.name': torch.zeros(1)})
    words = fit.problems(
        given='official',
        expected='ours',
        limit=2,
        prefix='backbone.',
        labels=dict(unexpected='unexpected official keys'),
        names={'k0': 'official.k0'},
    )
    assert words == [
        'missing keys: backbone.k1, backbone.k2, ... (9 in total)',
        'unexpected official keys: backbone.old.name',
        'shape mismatches (official vs ours): official.k0 -> backbone.k0 (2,) vs (1,)',
    ]
