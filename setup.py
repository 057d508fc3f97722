"""Packaging for mmbasis.

Configs and tools are shipped inside the package as ``mmbasis/.mim/{configs,tools}`` (the layout
OpenMMLab packages use), so an installed mmbasis can locate its own configs with
:func:`mmbasis.utils.get_config_path`. In a source checkout (editable install) they are read from
the repository's top-level ``configs/`` and ``tools/`` directly.
"""

import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
#: not shipped: tests, configs and tools (they go in as .mim data), experiments/ (research harnesses; .dev_scripts/,
#: the maintainer scripts, is no package either): both stay in the source repository
PACKAGE_EXCLUDE = ('tests', 'tests.*', 'configs', 'tools', 'experiments', 'experiments.*')


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'mmbasis', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension() -> None:
    """Copy ``configs/`` and ``tools/`` into ``mmbasis/.mim`` when building a wheel or sdist."""
    if not any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'build', 'build_py')):
        return  # editable/develop installs read the top-level folders
    mim_root = osp.join(HERE, 'mmbasis', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for name in ('configs', 'tools'):
        src, dst = osp.join(HERE, name), osp.join(mim_root, name)
        if osp.isdir(dst):
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


def read_requirements(path: str) -> list:
    with open(osp.join(HERE, path), encoding='utf-8') as f:
        lines = [line.split('#', 1)[0].strip() for line in f]
    return [line for line in lines if line]


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmbasis',
        version=read_version(),
        description='Deeply shared filter bases (Kang & Kim, NeurIPS 2021) for MMDetection 3.x',
        long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read(),
        long_description_content_type='text/markdown',
        license='Apache-2.0',
        python_requires='>=3.9',
        packages=find_packages(exclude=PACKAGE_EXCLUDE),
        include_package_data=True,
        package_data={'mmbasis': ['.mim/configs/**/*.py', '.mim/tools/**/*', '.mim/tools/*']},
        # ranges, not pins (see requirements/runtime.txt); mmcv as mmdet 3.3 asserts it at import
        install_requires=read_requirements('requirements/runtime.txt') + ['torch>=2.0', 'mmcv>=2.0.0rc4,<2.2.0'],
        extras_require={
            'tests': read_requirements('requirements/tests.txt'),
            'deploy': read_requirements('requirements/deploy.txt'),
            'onnx': read_requirements('requirements/deploy.txt'),  # the former name of the deploy extra
        },
        zip_safe=False,
    )
