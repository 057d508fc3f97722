"""``ReadableLogProcessor``: mmengine's ``LogProcessor`` that prints small values in scientific notation.

mmengine formats every logged float with ``num_digits`` decimals (``loss_orth: 0.0000``), which makes the
orthogonality regulariser look switched off for most of a run (its values are 1e-6 .. 1e-3). Values whose
fixed-point form would hide them (``0 < |v| < 10**-num_digits * 10``) are printed as ``3.568e-04`` instead;
everything else, including the log's layout, is mmengine's.
"""

import re
from typing import Tuple

from mmdet.registry import LOG_PROCESSORS
from mmengine.runner import LogProcessor


@LOG_PROCESSORS.register_module()
class ReadableLogProcessor(LogProcessor):
    """Same arguments as mmengine's ``LogProcessor``; small values in scientific notation (see module doc)."""

    def _readable(self, tag: dict, log_str: str) -> str:
        threshold = 10.0 ** (1 - self.num_digits)
        for name, value in tag.items():
            if isinstance(value, float) and 0 < abs(value) < threshold:
                short = name.split('/', 1)[-1]
                fixed = f'{short}: {value:.{self.num_digits}f}'
                log_str = re.sub(rf'(?<![\w/]){re.escape(fixed)}(?![\d])', f'{short}: {value:.3e}', log_str)
        return log_str

    def get_log_after_iter(self, runner, batch_idx: int, mode: str) -> Tuple[dict, str]:
        tag, log_str = super().get_log_after_iter(runner, batch_idx, mode)
        return tag, self._readable(tag, log_str)

    def get_log_after_epoch(self, runner, batch_idx: int, mode: str, with_non_scalar: bool = False) -> Tuple[dict, str]:
        tag, log_str = super().get_log_after_epoch(runner, batch_idx, mode, with_non_scalar)
        return tag, self._readable(tag, log_str)
