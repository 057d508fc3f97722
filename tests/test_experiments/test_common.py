"""experiments/ is a source-repository package: importable from the repository root, never shipped in the wheel."""

import importlib.util
import os.path as osp

from setuptools import find_packages

from experiments import common


def test_the_wheel_ships_mmbasis_but_not_the_experiments():
    spec = importlib.util.spec_from_file_location('mmbasis_setup', osp.join(common.REPO, 'setup.py'))
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)  # defines, does not run, setup() (it runs under __main__ only)
    packages = find_packages(common.REPO, exclude=setup.PACKAGE_EXCLUDE)
    assert {'mmbasis', 'mmbasis.analysis', 'mmbasis.compat', 'mmbasis.decompose', 'mmbasis.deploy'} <= set(packages)
    assert not any(p.split('.')[0] in ('experiments', 'tests') for p in packages)
