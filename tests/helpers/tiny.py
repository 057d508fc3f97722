"""The demo config shrunk for tests: 64x64 images, 4 train / 2 val images, batch 2, a narrow backbone; and
training it in a subprocess with test-only hooks (tests/plugins/faults.py)."""

import json
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import mmdet
import torch

from tests.helpers import free_port, load_tool  # noqa: F401  (load_tool re-exported for the tool tests)

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(REPO / 'configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py')
#: the demo's detector made narrow (a shared-basis ResNet-18 of 16 base channels, shared rank 4): ``--cfg-options``
NARROW_DEMO = {
    'model.backbone.base_channels': 16,
    'model.backbone.shared_rank': 4,
    'model.neck.in_channels': [16, 32, 64, 128],
}
MMDET_TRAIN = str(Path(mmdet.__file__).parent / '.mim' / 'tools' / 'train.py')


def tiny_options(data_root: str, max_epochs: int = 1) -> List[str]:
    """``--cfg-options`` for a run of ``max_epochs`` epochs of 2 iterations each on a private data root."""
    size = 'scale=(64,64)'
    return [
        f'train_dataloader.dataset.data_root={data_root}',
        'train_dataloader.dataset.num_images=4',
        'train_dataloader.dataset.img_size=64',
        'train_dataloader.batch_size=2',
        f'val_dataloader.dataset.data_root={data_root}',
        'val_dataloader.dataset.num_images=2',
        'val_dataloader.dataset.img_size=64',
        f'test_dataloader.dataset.data_root={data_root}',
        'test_dataloader.dataset.num_images=2',
        'test_dataloader.dataset.img_size=64',
        f'val_evaluator.ann_file={data_root}/val/annotation.json',
        f'test_evaluator.ann_file={data_root}/val/annotation.json',
        f'train_dataloader.dataset.pipeline.2.{size}',
        f'val_dataloader.dataset.pipeline.1.{size}',
        f'test_dataloader.dataset.pipeline.1.{size}',
        f'train_cfg.max_epochs={max_epochs}',
        f'train_cfg.val_interval={max_epochs}',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
        'model.backbone.base_channels=16',
        'model.backbone.shared_rank=4',
        'model.neck.in_channels=[16,32,64,128]',
        'param_scheduler.0.end=2',
        # an untrained detector may score every box below mmdet's 0.05: keep them all, so COCO metrics exist
        'model.test_cfg.rcnn.score_thr=0.0',
    ]


def study_options(root) -> List[str]:
    """``--cfg-options`` of a study's tiny runs: the shapes data at 64x64 under ``root/data`` (4 train, 2 val images,
    batch 2: two iterations per epoch), a ResNet of 32 base channels."""
    data, size = f'{root}/data', 'scale=(64,64)'
    return [
        *[
            f'{split}_dataloader.dataset.{k}'
            for split in ('train', 'val', 'test')
            for k in (f'data_root={data}', 'img_size=64')
        ],
        'train_dataloader.dataset.num_images=4',
        'train_dataloader.batch_size=2',
        'val_dataloader.dataset.num_images=2',
        'test_dataloader.dataset.num_images=2',
        f'val_evaluator.ann_file={data}/val/annotation.json',
        f'test_evaluator.ann_file={data}/val/annotation.json',
        f'train_dataloader.dataset.pipeline.2.{size}',
        f'val_dataloader.dataset.pipeline.1.{size}',
        f'test_dataloader.dataset.pipeline.1.{size}',
        'model.backbone.base_channels=32',
        'model.neck.in_channels=[32,64,128,256]',
        'param_scheduler.0.end=1',
        'default_hooks.logger.interval=1',
    ]


def run(
    args: List[str], cwd: Path = REPO, expect_ok: bool = True, env: Optional[dict] = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``python *args`` (or a ``bash`` script) in ``cwd``; assert the exit code when ``expect_ok``."""
    full_env = {**os.environ, 'PYTHONWARNINGS': 'ignore', **(env or {})}
    cmd = args if args[0] == 'bash' else [sys.executable] + args
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if expect_ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_tiny(
    work: str,
    data: str,
    epochs: int,
    hooks: Sequence[str],
    resume: Union[bool, str] = False,
    expect_ok: bool = True,
    extra: Sequence[str] = (),
    timeout: int = 600,
    tool: str = 'ours',
    config_lines: Sequence[str] = (),
    drop_options: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """Train the tiny demo config plus the test hooks ``hooks`` (config snippets) in a subprocess.

    ``resume``: False, True (``--resume``: the work dir's latest checkpoint) or a checkpoint path.
    ``tool``: ``'ours'`` (tools/train.py), ``'mmdet'`` (mmdet's own tools/train.py) or ``'dist2'``
    (tools/dist_train.sh with 2 CPU processes over gloo). ``extra``: more ``--cfg-options``; ``config_lines``:
    more lines of the config file; ``drop_options``: prefixes of :func:`tiny_options` entries to leave out.
    """
    os.makedirs(work, exist_ok=True)
    config = osp.join(work, '..', f'{osp.basename(work)}_cfg.py')
    with open(config, 'w', encoding='utf-8') as f:
        f.write(
            f"_base_ = '{DEMO_CONFIG}'\n"
            "custom_imports = dict(imports=['mmbasis', 'tests.plugins.faults'], allow_failed_imports=False)\n"
            "custom_hooks = [dict(type='FiniteLossHook'), dict(type='OrthogonalityRegularizerHook', "
            f'loss_weight=10.0), {", ".join(hooks)}]\n'
        )
        f.writelines(line + '\n' for line in config_lines)
    resume_args = [] if resume is False else ['--resume'] if resume is True else ['--resume', resume]
    kept = [o for o in tiny_options(data, epochs) if not o.startswith(tuple(drop_options))]
    options = ['--cfg-options', *kept, *extra]
    env = dict(PYTHONPATH=str(REPO))
    if tool == 'ours':
        args = ['tools/train.py', config, '--work-dir', work, *resume_args, *options]
    elif tool == 'mmdet':
        args = [MMDET_TRAIN, config, '--work-dir', work, *resume_args, *options]
    elif tool == 'dist2':
        args = ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work, *resume_args, *options]
        env.update(PYTHON=sys.executable, PORT=free_port())
    else:
        raise ValueError(f'tool={tool!r}: use ours, mmdet or dist2')
    return run(args, expect_ok=expect_ok, env=env, timeout=timeout)


def record_losses(path: str) -> str:
    """The hook snippet recording every iteration's losses to ``path`` (``{rank}``: one file per process)."""
    return f"dict(type='RecordLossesHook',path='{path}')"


def read_losses(path: str) -> Dict[int, dict]:
    """``{iteration: {loss name: value}}`` recorded by ``RecordLossesHook``; a repeated iteration keeps the last."""
    with open(path, encoding='utf-8') as f:
        records = [json.loads(line) for line in f]
    return {r['iter']: r['losses'] for r in records}


def read_state_dict(path: str) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def assert_same_tensors(state: dict, ref_state: dict) -> None:
    assert list(state) == list(ref_state)
    different = [k for k in state if not torch.equal(state[k], ref_state[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'
