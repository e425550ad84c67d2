"""Interpretation of finished runs (read through :class:`survpgc.rundir.RunContext`; nothing is retrained).

* :mod:`survpgc.explain.scores` -- per-patch scores of one case: attention, relevance, gradient x input,
  integrated gradients over the patch bag, occlusion;
* :mod:`survpgc.explain.attention` -- those scores drawn on the slide (heatmaps, top-patch montages) and
  localisation against known masks;
* :mod:`survpgc.explain.attribution` -- integrated-gradients shares of the fusion paths (paper Table 3).

Results go under ``<run>/interpret/``; their report sections live in :mod:`survpgc.report.interpret`.
Submodules import torch lazily through their functions; importing this package is cheap.
"""
