"""mmbasis: deeply shared filter bases (Kang & Kim, NeurIPS 2021) for MMDetection 3.x.

Importing the package registers every mmbasis module in mmdet's registries (``MODELS``, ``HOOKS``,
``DATASETS``) and installs the checkpoint allowlist that lets torch >= 2.6 resume mmengine checkpoints
with ``weights_only=True`` (see :mod:`mmbasis.compat.checkpoint_allowlist`).
"""

from .compat import install_checkpoint_allowlist
from .version import __version__

install_checkpoint_allowlist()

from . import datasets, engine, models  # noqa: E402,F401  (registration)

__all__ = ['__version__', 'datasets', 'engine', 'models']
