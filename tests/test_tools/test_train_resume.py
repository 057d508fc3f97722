"""tools/train.py, tools/test.py and mmdet's own tools/train.py on the demo config at a tiny size, including
resuming a full training checkpoint on torch >= 2.6 with weights_only kept on."""

import os.path as osp
import pickle
import shutil
from pathlib import Path

import mmdet
import pytest
import torch

import mmbasis  # noqa: F401
from mmbasis.compat import globals_needing_allowlist
from tests.helpers.tiny import DEMO_CONFIG, load_tool, run, tiny_options

MMDET_TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One epoch (2 iterations) with our tools/train.py; saves epoch_1.pth."""
    tmp = tmp_path_factory.mktemp('train')
    data, work = str(tmp / 'data'), str(tmp / 'work')
    proc = run(['tools/train.py', DEMO_CONFIG, '--work-dir', work, '--cfg-options', *tiny_options(data, 1)])
    return data, work, proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_logs_loss_orth_and_coco_metrics(trained):
    data, work, out = trained
    assert 'loss_orth' in out and 'orth_max_err' in out
    assert 'coco/bbox_mAP' in out
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert osp.isfile(osp.join(data, 'train', 'annotation.json'))  # generated on first use


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['ours', 'mmdet'])
def test_resume_full_checkpoint(trained, tmp_path, tool):
    """Ours: ``--resume`` without a path (latest checkpoint of the work dir); mmdet's: ``--resume CKPT``."""
    data, work, _ = trained
    ckpt = osp.join(work, 'epoch_1.pth')
    # what a full training checkpoint pickles besides tensors (see mmbasis/compat/checkpoint_allowlist.py)
    needed = set(globals_needing_allowlist(ckpt))
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed and 'builtins.getattr' in needed
    assert not torch.serialization.get_unsafe_globals_in_checkpoint(ckpt)
    torch.load(ckpt, weights_only=True)  # the allowlist installed by `import mmbasis` covers all of them
    work2 = tmp_path / 'resumed'
    if tool == 'ours':
        work2.mkdir()
        shutil.copy(ckpt, work2 / 'epoch_1.pth')
        (work2 / 'last_checkpoint').write_text(str(work2 / 'epoch_1.pth'))
        cmd = ['tools/train.py', DEMO_CONFIG, '--work-dir', str(work2), '--resume']
    else:
        cmd = [str(MMDET_TOOLS / 'train.py'), DEMO_CONFIG, '--work-dir', str(work2), '--resume', ckpt]
    proc = run(cmd + ['--cfg-options', *tiny_options(data, 2)])
    assert 'resumed epoch: 1, iter: 2' in proc.stdout + proc.stderr
    resumed = torch.load(str(work2 / 'epoch_2.pth'), weights_only=True)
    assert resumed['meta']['epoch'] == 2 and resumed['meta']['iter'] == 4
    if tool == 'mmdet':
        assert not (work2 / 'epoch_1.pth').exists()  # epoch 1 was not trained again
    # the shared bases are still one tensor per stage after resuming
    assert [k for k in resumed['state_dict'] if 'shared_basis' in k] == [
        f'backbone.layer{i}.shared_basis' for i in range(1, 5)
    ]


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['ours', 'mmdet'])
def test_test_tool_evaluates_dumps_and_flips(trained, tmp_path, tool):
    data, work, _ = trained
    out_file = str(tmp_path / 'results.pkl')
    script = 'tools/test.py' if tool == 'ours' else str(MMDET_TOOLS / 'test.py')
    proc = run(
        [
            script,
            DEMO_CONFIG,
            osp.join(work, 'epoch_1.pth'),
            '--work-dir',
            str(tmp_path),
            '--out',
            out_file,
            '--tta',
            '--cfg-options',
            *tiny_options(data, 1),
        ]
    )
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr
    assert 'DetTTAModel' in proc.stdout + proc.stderr
    with open(out_file, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 2 and {'pred_instances', 'img_id'} <= set(results[0])


@pytest.mark.parametrize(
    'tool, argv, match',
    [
        ('tools/train.py', ['configs/nope.py'], 'does not exist'),
        ('tools/test.py', [DEMO_CONFIG, 'missing.pth'], 'does not exist'),
        ('tools/test.py', [DEMO_CONFIG, DEMO_CONFIG, '--out', 'x.json'], 'must end with .pkl'),
        (
            'tools/train.py',
            [DEMO_CONFIG, '--launcher', 'pytorch'] if not torch.cuda.is_available() else ['configs/nope.py'],
            'torchrun|does not exist',
        ),
        (
            'tools/train.py',
            [DEMO_CONFIG, '--launcher', 'slurm'] if not torch.cuda.is_available() else ['configs/nope.py'],
            'the environment srun sets|does not exist',
        ),
    ],
)
def test_tools_reject_bad_arguments(tool, argv, match):
    with pytest.raises(SystemExit, match=match):
        load_tool(tool).main(argv)
