"""The report of a run directory: its plots and ``report.html``, drawn from the run's tables.

:func:`build_run_report` is called by the runner when a run's tables are complete, and by the
interpretation commands (:func:`rebuild_report`) after they wrote under ``interpret/``; nothing is
recomputed, everything is read through :class:`survpgc.rundir.RunDir`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from survpgc.rundir import RunContext, RunDir

__all__ = ["build_run_report", "rebuild_report"]

log = logging.getLogger(__name__)


def build_run_report(
    run: RunDir, *, config: dict[str, Any], cohort_summary: dict[str, Any] | None, protocol: str
) -> Path | None:
    """Draw the KM and forest plots of ``run`` and write its ``report.html`` (with every interpretation section
    found under ``interpret/``). Returns the report path."""
    from survpgc.report import html as report_html
    from survpgc.report import plots
    from survpgc.report.interpret import interpret_sections

    preds, metrics = run.read_table("predictions"), run.read_table("metrics")
    summary, comparisons = run.read_table("summary"), run.read_table("comparisons")
    images: dict[str, Path] = {}
    for model_id in summary["model"]:
        path = run.km_plot(model_id)
        try:
            plots.km_for_model(preds, model_id, path)
            images[f"Kaplan-Meier: {model_id}"] = path
        except Exception as exc:  # a plot must never sink a finished run
            log.warning("KM plot for %s failed: %s", model_id, exc)
    try:
        plots.forest_plot(metrics, run.forest_plot, metric="cindex")
        images["C-index per model"] = run.forest_plot
    except Exception as exc:
        log.warning("forest plot failed: %s", exc)
    return report_html.write_report(
        run.path,
        extra_sections=interpret_sections(run.path),
        cohort_summary=cohort_summary,
        protocol=protocol,
        config=config,
        summary=summary,
        metrics=metrics,
        comparisons=comparisons,
        images=images,
        notes=run.read_notes(),
    )


def rebuild_report(ctx: RunContext) -> Path | None:
    """Rebuild the report of a reopened run (e.g. after interpretation results were added)."""
    return build_run_report(
        ctx.run, config=ctx.cfg.to_dict(), cohort_summary=ctx.cohort.summary(), protocol=ctx.splits.protocol
    )
