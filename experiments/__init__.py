"""Research harnesses of mmbasis: the studies and the benchmark grid behind the documentation's results.

Not part of the installed package (``setup.py`` ships ``mmbasis`` only): run them from a source checkout, e.g.
``python -m experiments.sharing_study --help``. Every run of a study is an ordinary config run (``tools/train.py`` on
a config written into the run's work dir, the statistics of the bases recorded by ``BasisStatsHook``), so each number
can be reproduced with the config alone.

* :mod:`.grids`: the grids (cells per dataset, their metrics and comparisons), data only;
* :mod:`.common`: the run of one cell, the CSV of runs, claims, summaries, doc blocks;
* :mod:`.stats`: the statistics of the comparisons (Welch, Hedges' g, Holm);
* :mod:`.sharing_study`, :mod:`.warm_start_study`, :mod:`.gradient_flow`: the studies;
* :mod:`.benchmark`: the speed benchmark's grid, CSVs and doc blocks (the measurements: :mod:`mmbasis.analysis`).
"""
