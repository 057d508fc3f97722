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


def test_a_target_of_a_class_takes_its_best_model_and_runtime_or_its_worst_runtime():
    rows = [
        dict(ours='A', theirs='P', mode='eager', ratio='0.95'),
        dict(ours='A', theirs='P', mode='openvino', ratio='0.90'),
        dict(ours='B', theirs='P', mode='openvino', ratio='0.86'),
        dict(ours='B', theirs='Q', mode='openvino', ratio='0.10'),  # another baseline: not this target's
    ]
    assert benchmark.measure(rows, ('A', 'B'), 'P', ('eager', 'openvino'), 'ratio') == (0.86, 'B', 'openvino')
    assert benchmark.measure(rows, 'A', 'P', ('worst', 'eager', 'openvino'), 'ratio') == (0.95, 'A', 'eager')
    assert benchmark.measure(rows, 'C', 'P', 'eager', 'ratio') is None


def test_the_targets_table_says_met_missed_or_not_measured(tmp_path):
    (tmp_path / 'runtimes-b8.csv').write_text(
        'ours,theirs,mode,ratio\n'
        'ResNet34-S47U1* (ours),ResNet-34,openvino,0.872\n'
        'ResNet34-S16U1*,ResNet-34,onnx,0.40\n',
        encoding='utf-8',
    )
    table = benchmark.targets(str(tmp_path))
    assert '| 0.872x (ResNet34-S47U1* (ours), openvino) | missed by 0.002 |' in table
    assert '| 0.400x (ResNet34-S16U1*, onnx) | met |' in table
    ssd = '| SSD300 S48U1* class end to end, batch 1 | ssd300_r34_scratch-8e_shapes.py | at most 0.92x |'
    assert f'{ssd} - | not measured |' in table
