"""mmbasis: deeply shared filter bases (Kang & Kim, NeurIPS 2021) for MMDetection 3.x.

Importing the package registers every mmbasis module in mmdet's registries (``MODELS``, ``HOOKS``,
``DATASETS``) and installs the checkpoint allowlist that lets torch >= 2.6 resume mmengine checkpoints
with ``weights_only=True`` (see :mod:`mmbasis.utils.checkpoint_compat`).
"""
from .version import __version__
from . import models  # noqa: F401,E402  (registers backbones)

__all__ = ['__version__', 'models']
