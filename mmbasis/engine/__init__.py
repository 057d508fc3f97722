"""Engine: hooks (regulariser, non-finite-loss guard, safe checkpoints) and the log processor."""

from .hooks import *  # noqa: F401,F403
from .runner import *  # noqa: F401,F403
