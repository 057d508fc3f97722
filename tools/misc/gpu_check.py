"""GPU acceptance check: everything of mmbasis that needs CUDA, in one run, with one summary.

    bash tools/gpu_check.sh [--dry-run] [--work-dir DIR]        # sets up .venv first (CUDA build of mmcv's ops)
    python tools/misc/gpu_check.py [--dry-run] [--work-dir DIR]  # the environment as it is

Steps (each a subprocess from the repository root, with its own time limit):

1. ``gpu-tests``: ``python -m pytest -m gpu -rs tests``: every gpu-marked test (AMP with the regulariser, DDP over
   NCCL and SyncBN on 2 GPUs, which skip with the reason on one GPU, the SyncBN config, the CUDA benchmarks);
2. ``demo-train``: ``tools/train.py`` on the demo config for one epoch (the generated shapes data, 80 iterations);
3. ``demo-test``: ``tools/test.py`` on that epoch's checkpoint (COCO metrics of the 64 validation images);
4. ``benchmark``: ``tools/analysis_tools/benchmark_backbones.py --device cuda`` on one paper backbone of each kind
   (``BENCH_MODELS``) against the mmdet network it replaces: training step, eval, deploy; the table is printed in
   the summary.

The summary gives each step's outcome (passed, failed, or skipped with the reason) and seconds, the demo's bbox
mAP and the benchmark table; the exit code is 0 only when no step failed. The whole check is planned for 10
minutes on one modern GPU (the time limits add up to that) and says when it took longer.

``--dry-run`` runs nothing that needs CUDA: it prints the environment it detects and every command line, checks
them (each tool's own argument parser, the config and checkpoint paths, the gpu-marked tests that pytest
collects) and says which steps a real run would skip and why. CI runs it (tests/test_tools/test_gpu_check.py).
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = 'configs/shapes/faster-rcnn_r18-s16u1_slim-fpn_scratch-8e_shapes.py'
BUDGET_S = 600
#: one backbone of each kind (factorised at two ranks, whole-convolution sharing, depthwise): building and counting
#: every paper model takes minutes by itself; the full table is `benchmark_backbones.py --device cuda`
BENCH_MODELS = ('ResNet34-S48U1*', 'ResNet34-S16U1*', 'ResNet50-Shared', 'ResNet101-Shared', 'MobileNetV2-Shared')


@dataclass
class Step:
    name: str
    argv: List[str]  # after the interpreter
    timeout: int
    check: Callable[[], str]  # dry run: validates the command line, returns a one-line description


def detect() -> dict:
    """What this machine offers: torch and its CUDA, the GPUs, whether mmcv's ops were built with CUDA."""
    import torch

    env = dict(
        python=sys.version.split()[0],
        torch=torch.__version__,
        torch_cuda=torch.version.cuda or 'none (CPU build)',
        cuda_available=torch.cuda.is_available(),
        gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    )
    try:
        import mmcv
        from mmcv.ops import get_compiling_cuda_version

        env['mmcv'] = mmcv.__version__
        env['mmcv_ops_cuda'] = get_compiling_cuda_version()
    except Exception as e:  # noqa: BLE001  (reported, not fatal: the steps then fail with the cause)
        env['mmcv'] = f'not importable ({type(e).__name__}: {e})'
        env['mmcv_ops_cuda'] = 'not available'
    return env


def _load_tool(relpath: str):
    import importlib.util

    path = REPO / relpath
    spec = importlib.util.spec_from_file_location('gpu_check_' + path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parsed(relpath: str, argv: List[str]) -> str:
    """Parse ``argv`` with the tool's own parser (exits 2 with its message when invalid), then check that its
    config exists and has every key that ``--cfg-options`` overrides."""
    args = _load_tool(relpath).parse_args(argv)
    if not (REPO / args.config).is_file():
        raise SystemExit(f'error: {relpath}: config file {args.config!r} does not exist')
    from mmengine.config import Config

    cfg = Config.fromfile(str(REPO / args.config))
    for key in args.cfg_options or {}:
        node = cfg
        for part in key.split('.'):
            if part not in node:
                raise SystemExit(f'error: {relpath}: --cfg-options {key}: {args.config} has no such key')
            node = node[part]
    return f'{relpath}: arguments accepted by its parser, config and overridden keys exist'


def build_steps(work_dir: Path) -> List[Step]:
    demo_work = work_dir / 'demo'
    ckpt = demo_work / 'epoch_1.pth'
    train_args = [DEMO_CONFIG, '--work-dir', str(demo_work), '--cfg-options']
    train_args += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1']
    test_args = [DEMO_CONFIG, str(ckpt), '--work-dir', str(work_dir / 'demo-test')]
    bench_args = ['--models', *BENCH_MODELS, '--modes', 'train', 'eval', 'deploy', '--reps', '10', '--warmup', '3']
    bench_args += ['--csv', str(work_dir / 'benchmark.csv')]

    def check_tests() -> str:
        proc = subprocess.run(
            [sys.executable, '-m', 'pytest', '-m', 'gpu', '--collect-only', '-q', 'tests'],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=_env(),
        )
        ids = [line for line in proc.stdout.splitlines() if '::' in line]
        if proc.returncode != 0 or not ids:
            raise SystemExit(f'error: pytest could not collect the gpu-marked tests:\n{proc.stdout[-2000:]}')
        return f'{len(ids)} gpu-marked tests collected:\n' + '\n'.join(f'      {i}' for i in ids)

    def check_test_tool() -> str:
        # the checkpoint comes from demo-train; the rest is validated now
        return _parsed('tools/test.py', test_args) + f' (checkpoint {ckpt} made by demo-train)'

    def check_bench() -> str:
        # its parser refuses --device cuda where torch sees no GPU: validate the rest with --device cpu
        _load_tool('tools/analysis_tools/benchmark_backbones.py').parse_args([*bench_args, '--device', 'cpu'])
        return 'tools/analysis_tools/benchmark_backbones.py: arguments accepted (checked with --device cpu)'

    return [
        Step('gpu-tests', ['-m', 'pytest', '-m', 'gpu', '-rs', '-q', 'tests'], 240, check_tests),
        Step('demo-train', ['tools/train.py', *train_args], 120, lambda: _parsed('tools/train.py', train_args)),
        Step('demo-test', ['tools/test.py', *test_args], 45, check_test_tool),
        Step(
            'benchmark',
            ['tools/analysis_tools/benchmark_backbones.py', *bench_args, '--device', 'cuda'],
            180,
            check_bench,
        ),
    ]


def _env() -> dict:
    path = os.environ.get('PYTHONPATH')
    return dict(os.environ, PYTHONPATH=str(REPO) + (os.pathsep + path if path else ''), PYTHONWARNINGS='ignore')


def _run(step: Step, log: Path) -> tuple:
    """Run ``step``; (outcome, seconds, output). Its output also goes to ``log``."""
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, *step.argv], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=step.timeout
        )
        out = proc.stdout + proc.stderr
        outcome = 'passed' if proc.returncode == 0 else f'failed (exit {proc.returncode})'
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
        outcome = f'failed (over its {step.timeout} s limit)'
    log.write_text(out, encoding='utf-8')
    return outcome, time.monotonic() - start, out


def _note(step: Step, out: str) -> str:
    """The one fact of a step's output worth a summary line."""
    if step.name == 'gpu-tests':
        counts = re.findall(r'^(?:=+ )?(\d+ (?:passed|failed|skipped|deselected|error).*?) in [\d.]+s', out, re.M)
        skips = [line for line in out.splitlines() if line.startswith('SKIPPED')]
        return (counts[-1] if counts else 'no pytest summary') + ''.join(f'\n      {s}' for s in skips)
    if step.name == 'demo-test':
        found = re.findall(r'coco/bbox_mAP: ([\d.-]+)', out)
        return f'bbox mAP {found[-1]} after 1 epoch' if found else 'no bbox mAP in the output'
    return ''


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='GPU acceptance check (see the module docstring)')
    parser.add_argument('--dry-run', action='store_true', help='check the command lines; run nothing needing CUDA')
    parser.add_argument('--work-dir', default='work_dirs/gpu_check', help='outputs (default work_dirs/gpu_check)')
    args = parser.parse_args(argv)
    work_dir = Path(args.work_dir).resolve()
    env = detect()
    print('==== mmbasis GPU check' + (' (dry run)' if args.dry_run else '') + ' ====')
    for key, value in env.items():
        print(f'{key:14}: {value}')
    steps = build_steps(work_dir)
    no_cuda = []
    if not env['cuda_available']:
        no_cuda.append('torch sees no CUDA device (torch.cuda.is_available() is False)')
    elif env['mmcv_ops_cuda'] == 'not available':
        no_cuda.append("mmcv's ops were built without CUDA (bash tools/gpu_check.sh rebuilds them)")
    if args.dry_run:
        for step in steps:
            print(f'\n[{step.name}] python {shlex.join(step.argv)}  (limit {step.timeout} s)')
            print(f'    check: {step.check()}')
            reason = '; '.join(no_cuda)
            print(f'    a real run here would {"skip it: " + reason if reason else "run it"}')
        print(f'\ndry run: {len(steps)} command lines checked; nothing was run on a GPU')
        return 0
    if no_cuda:
        print(f'error: nothing to accept here: {"; ".join(no_cuda)}. `--dry-run` checks the command lines.')
        return 2
    work_dir.mkdir(parents=True, exist_ok=True)
    results, total = [], time.monotonic()
    failed_before = False
    for step in steps:
        if step.name == 'demo-test' and failed_before:
            results.append((step, 'skipped: demo-train failed, no checkpoint to evaluate', 0.0, ''))
            continue
        print(f'[{step.name}] python {shlex.join(step.argv)}', flush=True)
        outcome, seconds, out = _run(step, work_dir / f'{step.name}.log')
        failed_before = step.name == 'demo-train' and outcome != 'passed'
        results.append((step, outcome, seconds, out))
    total = time.monotonic() - total
    print('\n==== summary ====')
    for step, outcome, seconds, out in results:
        note = _note(step, out) if outcome == 'passed' or step.name == 'gpu-tests' else ''
        print(f'{step.name:11} {outcome:24} {seconds:6.0f} s  {note}')
        if outcome.startswith('failed'):
            print(f'    log: {work_dir / (step.name + ".log")}; its end:\n' + out[-1500:])
    print(f'total {total:.0f} s ({"within" if total <= BUDGET_S else "OVER"} the {BUDGET_S} s budget)')
    bench = next((out for step, outcome, _, out in results if step.name == 'benchmark' and outcome == 'passed'), '')
    if bench:
        print('\n' + bench[bench.rfind('| ours | theirs |') :].strip())
    return 1 if any(outcome.startswith('failed') for _, outcome, _, _ in results) else 0


if __name__ == '__main__':
    sys.exit(main())
