"""Detection heads: mmdet heads with fixes needed by mmbasis configs (registered in mmdet's MODELS)."""

from .fixed_ssd_head import FixedSSDHead

__all__ = ['FixedSSDHead']
