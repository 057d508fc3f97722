"""Models: layers -> backbones (registered in mmdet's MODELS) -> losses -> paper model table."""
from .backbones import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .paper_models import PAPER_BACKBONE_PARAMS, PAPER_MODEL_NAMES, paper_backbone_cfg  # noqa: F401
