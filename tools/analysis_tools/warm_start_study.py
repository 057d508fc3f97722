"""Moved to experiments/warm_start_study.py (a research harness, ``python -m experiments.warm_start_study``); this path
forwards to it and will be removed."""

import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from mmbasis.utils.deprecation import forward_tool  # noqa: E402

if __name__ == '__main__':
    forward_tool(__file__, 'experiments.warm_start_study')
