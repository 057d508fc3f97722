"""experiments/saved_memory.py: what a training step stores for backward, with and without recompute_basis_norm."""

import re

import torch

from experiments import saved_memory
from mmbasis.models import SharedBasisResNet


def test_recomputing_the_basis_norm_stores_less_and_the_table_says_so(capsys):
    assert saved_memory.main(['--batch', '2', '--size', '32', '--models', 'ResNet34-S48U1*', '--time', '1']) == 0
    out = capsys.readouterr().out
    off = float(re.search(r'\| ResNet34-S48U1\* \| False \| ([\d.]+) \|', out).group(1))
    on = float(re.search(r'\| ResNet34-S48U1\* \| True \| ([\d.]+) \|', out).group(1))
    assert 0 < on < off
    assert re.search(r'\| ResNet34-S48U1\* \| [\d.]+ \| [\d.]+ \| [\d.]+x \[', out)  # the timed row


def test_saved_bytes_are_counted_once_per_tensor():
    x = torch.randn(2, 3, 32, 32)
    model = SharedBasisResNet(arch='ResNet34-S16U1*', norm_eval=False).train()
    mib = saved_memory.saved_mib(model, x)
    # at least the input of the stem convolution is stored, and a second call stores the same amount
    assert mib >= x.numel() * 4 / 2**20 and saved_memory.saved_mib(model, x) == mib
