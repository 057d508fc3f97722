"""experiments/benchmark.py: the grid of benchmark runs behind docs/speed.md."""

from experiments import benchmark
from tests.helpers import load_tool


def test_every_run_of_the_benchmark_grid_is_a_valid_command_with_its_own_block():
    """experiments/benchmark.py: each run's command line is accepted by the tool (the trained twins' checkpoints
    aside, which only a trained work dir has), and no two runs fill the same block of the speed page."""
    tool = load_tool('tools/analysis_tools/benchmark_backbones.py')
    blocks = set()
    for run in benchmark.RUNS:
        argv = benchmark.command(run, out_dir='out', doc='docs/speed.md')
        if '--trained' not in argv:
            args = tool.parse_args(argv)
            assert args.csv == f'out/{run}.csv' and args.doc == 'docs/speed.md'
        block = argv[argv.index('--doc-block') + 1] if '--doc-block' in argv else None
        mode = '-detectors' if '--trained' in argv or '--detectors' in argv else '-layers' if '--layers' in argv else ''
        blocks.add(block or f'benchmark{mode}')
    assert len(blocks) == len(benchmark.RUNS)
