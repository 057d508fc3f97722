"""Runner components: the log processor that keeps small values (the regulariser's) readable."""

from .log_processor import ReadableLogProcessor

__all__ = ['ReadableLogProcessor']
