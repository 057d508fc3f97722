"""The tools on a GPU (gpu-marked: skipped with the reason on a machine without CUDA; tools/gpu_check.sh runs
them): AMP training with the regulariser, DDP over NCCL with 2 processes, the SyncBN config, the CUDA benchmark of
whole detectors. All on the demo config at the tiny size of tests/test_tools/tiny.py."""

import csv
import json
import os.path as osp
import sys

import pytest
import torch

import mmbasis  # noqa: F401  (allowlist for weights_only loads of full checkpoints)
from tests.helpers import free_port
from tests.helpers.tiny import DEMO_CONFIG, REPO, load_tool, run, tiny_options

TWO_GPUS = pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason=f'needs 2 CUDA GPUs; this machine has {torch.cuda.device_count()}'
)


def _config(tmp_path, hooks: str = '') -> str:
    config = tmp_path / 'cfg.py'
    config.write_text(
        f"_base_ = '{DEMO_CONFIG}'\n"
        "custom_imports = dict(imports=['mmbasis', 'tests.plugins.faults'], allow_failed_imports=False)\n"
        + (f'custom_hooks = _base_.custom_hooks + [{hooks}]\n' if hooks else '')
    )
    return str(config)


@pytest.mark.gpu
@pytest.mark.slow
def test_amp_training_keeps_loss_orth_float32(tmp_path):
    """tools/train.py --amp: the detector's forward runs under fp16 autocast, the regulariser's term stays
    float32 (it is computed outside autocast) and every loss of every iteration is finite."""
    record = tmp_path / 'dtypes.jsonl'
    config = _config(tmp_path, f"dict(type='RecordLossDtypesHook', path='{record}')")
    work, data = str(tmp_path / 'work'), str(tmp_path / 'data')
    proc = run(
        ['tools/train.py', config, '--amp', '--work-dir', work, '--cfg-options', *tiny_options(data, 2)],
        env=dict(PYTHONPATH=str(REPO)),
    )
    assert 'loss_orth' in proc.stdout + proc.stderr
    records = [json.loads(line) for line in record.read_text().splitlines()]
    assert [r['iter'] for r in records] == [1, 2, 3, 4]
    assert all(r['dtypes']['loss_orth'] == 'torch.float32' and r['finite'] for r in records)
    dumped = open(osp.join(work, 'cfg.py'), encoding='utf-8').read()
    assert "type='AmpOptimWrapper'" in dumped


@pytest.mark.gpu
@pytest.mark.slow
@TWO_GPUS
def test_dist_train_over_nccl_with_two_gpus(tmp_path):
    work, data = str(tmp_path / 'work'), str(tmp_path / 'data')
    proc = run(
        ['bash', 'tools/dist_train.sh', DEMO_CONFIG, '2', '--work-dir', work, '--cfg-options', *tiny_options(data, 2)],
        env=dict(PYTHON=sys.executable, PORT=free_port()),
    )
    out = proc.stdout + proc.stderr
    assert "'backend': 'nccl'" in out and 'GPU number: 2' in out and 'coco/bbox_mAP' in out
    ckpt = torch.load(osp.join(work, 'epoch_2.pth'), map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 2  # 4 images, batch 2 per GPU: 1 iteration per epoch
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values() if v.is_floating_point())


@pytest.mark.gpu
@pytest.mark.slow
def test_syncbn_config_trains_on_the_gpus(tmp_path):
    """The demo with ``model.backbone.norm_cfg.type=SyncBN`` through tools/dist_train.sh on every GPU (up to 2):
    SyncBatchNorm in every norm of the backbone during training, checkpoint keys those of BatchNorm."""
    gpus = min(2, torch.cuda.device_count())
    record = tmp_path / 'state.json'
    config = _config(tmp_path, f"dict(type='RecordNormTypesHook', path='{record}')")
    work, data = str(tmp_path / 'work'), str(tmp_path / 'data')
    options = [*tiny_options(data, 1), 'model.backbone.norm_cfg.type=SyncBN']
    run(
        ['bash', 'tools/dist_train.sh', config, str(gpus), '--work-dir', work, '--cfg-options', *options],
        env=dict(PYTHON=sys.executable, PORT=free_port(), PYTHONPATH=str(REPO)),
    )
    assert json.loads(record.read_text())['backbone_norms'] == ['SyncBatchNorm']
    ckpt = torch.load(osp.join(work, 'epoch_1.pth'), map_location='cpu', weights_only=True)
    assert 'backbone.bn1.running_mean' in ckpt['state_dict']


@pytest.mark.gpu
def test_detector_benchmark_on_cuda(tmp_path):
    bench = load_tool('tools/analysis_tools/benchmark_backbones.py')
    out = tmp_path / 'det.csv'
    argv = ['--detectors', DEMO_CONFIG, '--size', '64', '--iters', '1', '--warmup', '0', '--device', 'cuda']
    assert bench.main([*argv, '--csv', str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r['mode'] for r in rows] == ['det-train', 'det-forward', 'det-infer']
    assert all(float(r['ours_ms']) > 0 and float(r['theirs_ms']) > 0 for r in rows)
