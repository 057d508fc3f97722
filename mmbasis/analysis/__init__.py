"""Measuring shared-basis backbones and detectors against the networks they replace: speed (interleaved timing of
a pair), memory, multiply-adds, sizes and deploy forms, for the paper models or one's own backbones.

* :mod:`.timing`: interleaved timing, peak memory, multiply-adds, sizes, profiles (:class:`Settings`);
* :mod:`.backbones`: a backbone pair in every mode (:func:`bench_pair`);
* :mod:`.layers`: each factorised convolution against the plain one it replaces (:func:`bench_layers`);
* :mod:`.detectors`: whole detectors, untrained (heads zeroed) or trained twins (:func:`bench_detectors`);
* :mod:`.report`: the tables and the CSV.

The command is ``tools/analysis_tools/benchmark_backbones.py``; the grid behind the documentation's speed tables is
``experiments/benchmark.py``.
"""

from .backbones import REGULARISER, bench_backbones, bench_pair, build_backbone, pairs_for, resolve_model
from .detectors import BenchError, bench_detectors
from .layers import bench_layers
from .timing import ALL_MODES, MODES, RUNTIME_MODES, Settings, time_interleaved

__all__ = [
    'ALL_MODES',
    'MODES',
    'RUNTIME_MODES',
    'REGULARISER',
    'BenchError',
    'Settings',
    'bench_backbones',
    'bench_detectors',
    'bench_layers',
    'bench_pair',
    'build_backbone',
    'pairs_for',
    'resolve_model',
    'time_interleaved',
]
