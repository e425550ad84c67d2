"""Interpretation of finished runs and the paper's studies.

* :mod:`survpgc.explain.runs` -- reopen a run directory (config, cohort, folds, trained fold models);
* :mod:`survpgc.explain.attention` -- per-patch attention and relevance scores, heatmaps on the slide,
  top-patch montages, localisation against known masks;
* :mod:`survpgc.explain.attribution` -- integrated-gradients shares of the fusion paths (paper Table 3);
* :mod:`survpgc.explain.studies` -- template diversity (Table 5, Fig. 5) and clinical integration (Table 4);
* :mod:`survpgc.explain.report` -- the report sections for everything under ``<run>/interpret/``.

Submodules import torch lazily through their functions; importing this package is cheap.
"""
