"""tools/gpu_check.sh: its dry mode (what CI can run without a GPU) and its refusals."""

import pytest
import torch

from tests.helpers.tiny import load_tool, run

gpu_check = load_tool('tools/misc/gpu_check.py')


@pytest.mark.slow
def test_dry_run_checks_every_command_line_and_gives_the_skip_reasons(tmp_path):
    proc = run(['bash', 'tools/gpu_check.sh', '--dry-run', '--work-dir', str(tmp_path)], timeout=300)
    out = proc.stdout
    assert 'would run: bash tools/bootstrap.sh' in out  # and did not: a dry run changes nothing
    assert '==== mmbasis GPU check (dry run) ====' in out
    assert f'cuda_available: {torch.cuda.is_available()}' in out and 'mmcv_ops_cuda :' in out
    commands = [line for line in out.splitlines() if line.startswith('[')]
    assert [c.split(']')[0][1:] for c in commands] == ['gpu-tests', 'demo-train', 'demo-test', 'benchmark']
    assert 'python -m pytest -m gpu -rs -q tests' in commands[0]
    assert f'--work-dir {tmp_path}/demo --cfg-options train_cfg.max_epochs=1' in commands[1]
    assert f'{tmp_path}/demo/epoch_1.pth' in commands[2] and '--device cuda' in commands[3]
    # the gpu-marked tests pytest collects, the ones this issue asked for among them
    for test in (
        'test_amp_optim_wrapper_on_gpu',
        'test_amp_training_keeps_loss_orth_float32',
        'test_ddp_over_nccl_with_the_regulariser_matches_one_process',
        'test_dist_train_over_nccl_with_two_gpus',
        'test_syncbn_on_two_gpus_matches_batchnorm_on_the_whole_batch',
        'test_backbone_and_layer_modes_run_on_cuda',
    ):
        assert test in out
    assert out.count('arguments accepted') == 3
    if not torch.cuda.is_available():
        assert out.count('a real run here would skip it: torch sees no CUDA device') == 4
    assert 'dry run: 4 command lines checked; nothing was run on a GPU' in out
    assert not (tmp_path / 'demo').exists()


def test_dry_run_refuses_a_broken_command_line(tmp_path, monkeypatch):
    steps = {s.name: s for s in gpu_check.build_steps(tmp_path)}
    assert 'config and overridden keys exist' in steps['demo-train'].check()
    monkeypatch.setattr(gpu_check, 'DEMO_CONFIG', 'configs/shapes/none.py')
    steps = {s.name: s for s in gpu_check.build_steps(tmp_path)}
    with pytest.raises(SystemExit, match="config file 'configs/shapes/none.py' does not exist"):
        steps['demo-train'].check()
    monkeypatch.undo()
    steps = {s.name: s for s in gpu_check.build_steps(tmp_path)}
    steps['demo-train'].argv[-1] = 'train_cfg.val_intervall=1'  # a typo in an overridden key
    steps['demo-train'].check = lambda: gpu_check._parsed('tools/train.py', steps['demo-train'].argv[1:])
    with pytest.raises(SystemExit, match='--cfg-options train_cfg.val_intervall: .* has no such key'):
        steps['demo-train'].check()


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a machine without CUDA')
def test_without_cuda_a_real_run_is_refused(tmp_path, capsys):
    assert gpu_check.main(['--work-dir', str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert 'error: nothing to accept here: torch sees no CUDA device' in out and '--dry-run' in out
    assert not any(tmp_path.iterdir())


def test_bad_usage_is_refused(capsys):
    with pytest.raises(SystemExit) as err:
        gpu_check.main(['--gpus', '2'])
    assert err.value.code == 2 and 'unrecognized arguments: --gpus 2' in capsys.readouterr().err


def test_summary_notes_read_pytest_and_the_demo_metrics(tmp_path):
    steps = {s.name: s for s in gpu_check.build_steps(tmp_path)}
    pytest_out = (
        'SKIPPED [1] tests/test_engine/test_gpu_distributed.py:126: needs 2 CUDA GPUs; this machine has 1\n'
        '6 passed, 2 skipped in 95.12s (0:01:35)\n'
    )
    note = gpu_check._note(steps['gpu-tests'], pytest_out)
    assert note.startswith('6 passed, 2 skipped') and 'needs 2 CUDA GPUs; this machine has 1' in note
    assert gpu_check._note(steps['gpu-tests'], 'ImportError') == 'no pytest summary'
    log = 'bbox_mAP_copypaste: ...\n12/03 - mmengine - INFO - Epoch(test) [64/64]  coco/bbox_mAP: 0.4120  coco/x: 1\n'
    assert gpu_check._note(steps['demo-test'], log) == 'bbox mAP 0.4120 after 1 epoch'


def test_a_run_summarises_each_step_and_fails_when_one_fails(tmp_path, monkeypatch, capsys):
    """The orchestration on the CPU: the environment claimed to have CUDA, the four steps replaced by small
    Python commands (the real ones need a GPU)."""
    monkeypatch.setattr(gpu_check, 'detect', lambda: dict(cuda_available=True, gpus=['a GPU'], mmcv_ops_cuda='13.0'))

    def steps(work_dir):
        return [
            gpu_check.Step('gpu-tests', ['-c', "print('3 passed, 1 skipped in 1.00s')"], 60, str),
            gpu_check.Step('demo-train', ['-c', "import sys; print('diverged'); sys.exit(3)"], 60, str),
            gpu_check.Step('demo-test', ['-c', "print('never run')"], 60, str),
            gpu_check.Step('benchmark', ['-c', "print('row\\n| ours | theirs | mode |\\n| x | y | train |')"], 60, str),
        ]

    monkeypatch.setattr(gpu_check, 'build_steps', steps)
    assert gpu_check.main(['--work-dir', str(tmp_path)]) == 1
    out = capsys.readouterr().out
    summary = out.split('==== summary ====')[1]
    assert 'gpu-tests   passed' in summary and '3 passed, 1 skipped' in summary
    assert 'demo-train  failed (exit 3)' in summary and 'diverged' in summary
    assert 'demo-test   skipped: demo-train failed, no checkpoint to evaluate' in summary
    assert 'benchmark   passed' in summary and 'within the 600 s budget' in summary
    assert summary.rstrip().endswith('| ours | theirs | mode |\n| x | y | train |')
    assert (tmp_path / 'demo-train.log').read_text() == 'diverged\n'
