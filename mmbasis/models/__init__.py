"""Models: layers -> backbones (registered in mmdet's MODELS) -> paper model table."""
from .backbones import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
