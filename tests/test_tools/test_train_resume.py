"""tools/train.py, tools/test.py and mmdet's own tools/train.py on the demo config at a tiny size, including
resuming a full training checkpoint on torch >= 2.6 with weights_only kept on."""
import os
import os.path as osp
import pickle
import subprocess
import sys
from pathlib import Path

import mmdet
import pytest
import torch

import mmbasis  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / 'configs/demo/faster-rcnn_r18-s16u1_slim-fpn_shapes.py')
MMDET_TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'


def tiny_options(data_root: str, max_epochs: int):
    return [
        f'train_dataloader.dataset.data_root={data_root}', 'train_dataloader.dataset.num_images=4',
        'train_dataloader.dataset.img_size=64', 'train_dataloader.batch_size=2',
        f'val_dataloader.dataset.data_root={data_root}', 'val_dataloader.dataset.num_images=2',
        'val_dataloader.dataset.img_size=64', f'test_dataloader.dataset.data_root={data_root}',
        'test_dataloader.dataset.num_images=2', 'test_dataloader.dataset.img_size=64',
        f'val_evaluator.ann_file={data_root}/val/annotation.json',
        f'test_evaluator.ann_file={data_root}/val/annotation.json',
        'train_dataloader.dataset.pipeline.2.scale=(64,64)', 'val_dataloader.dataset.pipeline.1.scale=(64,64)',
        'test_dataloader.dataset.pipeline.1.scale=(64,64)',
        f'train_cfg.max_epochs={max_epochs}', f'train_cfg.val_interval={max_epochs}',
        'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
        'model.backbone.base_channels=16', 'model.neck.in_channels=[16,32,64,128]',
        'param_scheduler.0.end=2']


def run(args, cwd=REPO):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('train')
    data, work = str(tmp / 'data'), str(tmp / 'work')
    out = run(['tools/train.py', CONFIG, '--work-dir', work, '--cfg-options', *tiny_options(data, 1)])
    return data, work, out


@pytest.mark.slow
def test_train_logs_loss_orth_and_coco_metrics(trained):
    data, work, out = trained
    assert 'loss_orth' in out and 'orth_max_err' in out
    assert 'coco/bbox_mAP' in out
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['ours', 'mmdet'])
def test_resume_full_checkpoint(trained, tmp_path, tool):
    data, work, _ = trained
    ckpt = osp.join(work, 'epoch_1.pth')
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(ckpt)
    assert unsafe, 'a full training checkpoint pickles non-tensor objects'
    torch.load(ckpt, weights_only=True)  # the allowlist installed by `import mmbasis` covers all of them
    train = 'tools/train.py' if tool == 'ours' else str(MMDET_TOOLS / 'train.py')
    work2 = str(tmp_path / 'resumed')
    out = run([train, CONFIG, '--work-dir', work2, '--resume', ckpt, '--cfg-options', *tiny_options(data, 2)])
    assert 'resumed epoch: 1, iter: 2' in out
    resumed = torch.load(osp.join(work2, 'epoch_2.pth'), weights_only=True)
    assert resumed['meta']['epoch'] == 2 and resumed['meta']['iter'] == 4
    assert not osp.exists(osp.join(work2, 'epoch_1.pth'))  # epoch 1 was not trained again
    # the shared bases are still one tensor per stage after resuming
    assert [k for k in resumed['state_dict'] if 'shared_basis' in k] == [
        f'backbone.layer{i}.shared_basis' for i in range(1, 5)]


@pytest.mark.slow
def test_test_tool_evaluates_and_dumps(trained, tmp_path):
    data, work, _ = trained
    out_file = str(tmp_path / 'results.pkl')
    out = run(['tools/test.py', CONFIG, osp.join(work, 'epoch_1.pth'), '--work-dir', str(tmp_path), '--out',
               out_file, '--cfg-options', *tiny_options(data, 1)])
    assert 'coco/bbox_mAP' in out
    with open(out_file, 'rb') as f:
        assert len(pickle.load(f)) == 2


def test_unknown_globals_are_still_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'payload': pickle.PickleError('not allowlisted')}, path)
    with pytest.raises(pickle.UnpicklingError, match='PickleError'):
        torch.load(path, weights_only=True)


def test_tools_reject_bad_paths(tmp_path):
    for args, match in ((['tools/train.py', 'configs/nope.py'], 'does not exist'),
                        (['tools/test.py', CONFIG, str(tmp_path / 'missing.pth')], 'does not exist')):
        proc = subprocess.run([sys.executable] + args, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and match in proc.stderr
