"""Models: layers -> backbones (registered in mmdet's MODELS) -> paper model table."""
from .layers import *  # noqa: F401,F403
