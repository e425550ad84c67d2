"""Interpretation of finished runs (read through :class:`survpgc.rundir.RunContext`; nothing is retrained).

* :mod:`survpgc.explain.attention` -- per-patch attention and relevance scores, heatmaps on the slide,
  top-patch montages, localisation against known masks;
* :mod:`survpgc.explain.attribution` -- integrated-gradients shares of the fusion paths (paper Table 3).

Results go under ``<run>/interpret/``; their report sections live in :mod:`survpgc.report.interpret`.
Submodules import torch lazily through their functions; importing this package is cheap.
"""
