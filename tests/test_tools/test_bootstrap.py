"""The set-up script of the README's two commands, run again on the environment the suite runs in."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAMP = REPO / '.venv' / '.mmbasis-env'


@pytest.mark.skipif(not STAMP.is_file(), reason='not running inside the bootstrapped .venv (no completion stamp)')
def test_second_run_installs_nothing():
    before = STAMP.stat().st_mtime
    log = REPO / '.bootstrap.log'
    log_before = log.stat().st_mtime if log.exists() else None
    proc = subprocess.run(
        ['bash', str(REPO / 'tools' / 'bootstrap.sh')],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '' and proc.stderr == ''  # no step ran
    assert STAMP.stat().st_mtime == before
    assert (log.stat().st_mtime if log.exists() else None) == log_before  # the log was not even reopened


def test_missing_interpreter_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        ['bash', str(REPO / 'tools' / 'bootstrap.sh')],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHON='python-does-not-exist'),
    )
    assert proc.returncode != 0
    assert "no Python interpreter 'python-does-not-exist'" in proc.stderr
    assert STAMP.is_file() or not (REPO / '.venv').exists()  # a good environment is never touched
