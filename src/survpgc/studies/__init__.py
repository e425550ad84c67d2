"""Studies built from the layers below, one command each.

* :mod:`survpgc.studies.paper` -- the paper's studies: template diversity (Table 5, Fig. 5) and clinical
  integration (Table 4).
* :mod:`survpgc.studies.truth` -- the multi-seed study on synthetic cohorts with planted truth: each model's
  C-index against the oracle, localisation of the planted texture by every per-patch score, integrated-gradients
  shares and whether they follow a permuted modality, on seeds drawn at run time.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "clinical_integration_study": "paper",
    "survival_groups": "paper",
    "template_study": "paper",
    "DEVELOPMENT_SEEDS": "truth",
    "draw_seeds": "truth",
    "truth_study": "truth",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"survpgc.studies.{_HOME[name]}"), name)
    raise AttributeError(f"module 'survpgc.studies' has no attribute {name!r}")


__all__ = sorted(_HOME)
