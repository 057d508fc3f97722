"""Engine: hooks (the orthogonality regulariser)."""
from .hooks import *  # noqa: F401,F403
