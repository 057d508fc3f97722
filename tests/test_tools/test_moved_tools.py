"""Commands that moved keep a forwarding stub at their old path: it says where the command went (one line and a
DeprecationWarning) and runs it with the same arguments and exit status."""

import pytest

from tests.helpers.tiny import run

MOVED = [
    ('tools/analysis_tools/sharing_study.py', 'python -m experiments.sharing_study', ['--dry-run', '--seeds', '0']),
    ('tools/analysis_tools/warm_start_study.py', 'python -m experiments.warm_start_study', ['--dry-run']),
    ('tools/analysis_tools/gradient_flow.py', 'python -m experiments.gradient_flow', ['--help']),
    ('tools/misc/model_zoo.py', '.dev_scripts/model_zoo.py', ['--help']),
    ('tools/misc/training_cost.py', '.dev_scripts/training_cost.py', ['--check']),
]


@pytest.mark.slow
@pytest.mark.parametrize('old, new, args', MOVED, ids=[m[0] for m in MOVED])
def test_the_old_path_forwards_to_the_new_command(old, new, args):
    proc = run([old, *args], env=dict(PYTHONWARNINGS='default'))
    assert f'{old} moved to {new}; this path forwards to it' in proc.stderr
    assert 'DeprecationWarning' in proc.stderr
    assert proc.stdout.strip()  # the new command ran (its listing, help or check line)


def test_a_failing_new_command_fails_the_old_one():
    proc = run(['tools/analysis_tools/sharing_study.py', '--cells', 'r99'], expect_ok=False)
    assert proc.returncode == 2 and "unknown cells ['r99']" in proc.stderr
