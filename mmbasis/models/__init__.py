"""Registered model code: layers -> backbones (mmdet's MODELS) -> losses; dense heads mmbasis configs need; the
paper's models keyed by arch name (:mod:`mmbasis.models.archs`)."""

from . import archs  # noqa: F401
from .backbones import *  # noqa: F401,F403
from .dense_heads import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
