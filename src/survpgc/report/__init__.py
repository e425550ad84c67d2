"""Run reports: Kaplan-Meier and forest plots (:mod:`survpgc.report.plots`) and the self-contained HTML
report (:mod:`survpgc.report.html`), whose sections are data (:mod:`survpgc.report.blocks`) rendered by
autoescaped Jinja2 templates (:mod:`survpgc.report.templating`).

Importing this package is cheap: matplotlib loads only when a plot is drawn, and the names below are
resolved lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "forest_plot",
    "format_p_value",
    "km_for_model",
    "km_plot",
    "km_summary",
    "write_report",
]

_WHERE = {
    "forest_plot": "survpgc.report.plots",
    "format_p_value": "survpgc.report.plots",
    "km_for_model": "survpgc.report.plots",
    "km_plot": "survpgc.report.plots",
    "km_summary": "survpgc.report.plots",
    "write_report": "survpgc.report.html",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
