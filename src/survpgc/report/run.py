"""The report of a run directory: its plots and ``report.html``, drawn from the run's tables.

:func:`build_run_report` is called by the runner when a run's tables are complete, and by the
interpretation commands (:func:`rebuild_report`) after they wrote under ``interpret/``; nothing is
recomputed, everything is read through :class:`survpgc.rundir.RunDir`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from survpgc.eval.registry import Metric, metrics_for, metrics_in
from survpgc.rundir import RunContext, RunDir

__all__ = ["build_run_report", "rebuild_report", "run_metrics"]

log = logging.getLogger(__name__)


def run_metrics(config: dict[str, Any], summary_columns: Any) -> tuple[Metric, ...]:
    """The metrics shown for a run: those of its ``eval.times`` (:func:`~survpgc.eval.registry.metrics_for`)
    when its summary table holds exactly them (``<key>_mean`` columns), else the table's own metric columns.

    The table decides what exists: a run written when the AUC times were fixed at 12, 36 and 60 months keeps
    its ``auc_12/36/60`` columns whatever its config says, and a config without ``eval.times`` falls back to
    the table's columns alone.
    """
    present = metrics_in(summary_columns, suffix="_mean")
    times = (config.get("eval") or {}).get("times") if isinstance(config, dict) else None
    if not times:
        return present
    wanted = metrics_for(times)
    if {m.key for m in wanted} == {m.key for m in present}:
        return wanted
    log.info(
        "report: the summary's metric columns %s differ from eval.times %s; showing the columns",
        [m.key for m in present],
        list(times),
    )
    return present


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
        extra_sections=interpret_sections(
            run.interpret_dir,
            summary=summary,
            comparisons=comparisons,
            cohort=str((config or {}).get("cohort", {}).get("source", "")),
        ),
        cohort_summary=cohort_summary,
        protocol=protocol,
        config=config,
        summary=summary,
        metrics=metrics,
        comparisons=comparisons,
        images=images,
        notes=run.read_notes(),
        metric_list=_with_oracle(run_metrics(config, summary.columns), summary.columns),
    )


#: The oracle column of a run on a synthetic cohort (``oracle_cindex_mean`` ... in its summary), shown beside the
#: models' C-index: the true risk's Harrell C on the same test cases, a ceiling, not a trained model.
ORACLE_METRIC = Metric(
    "oracle_cindex",
    "Oracle C-index (true risk, ceiling)",
    what="Harrell's C of the synthetic cohort's true risk (truth.csv) on the same test cases as the model",
)


def _with_oracle(names: tuple[Metric, ...], summary_columns: Any) -> tuple[Metric, ...]:
    """``names`` with :data:`ORACLE_METRIC` after the C-indices when the summary has the oracle's columns."""
    if f"{ORACLE_METRIC.key}_mean" not in set(summary_columns):
        return names
    at = max((i + 1 for i, m in enumerate(names) if m.key.startswith("cindex")), default=0)
    return (*names[:at], ORACLE_METRIC, *names[at:])


def rebuild_report(ctx: RunContext) -> Path | None:
    """Rebuild the report of a reopened run (e.g. after interpretation results were added)."""
    return build_run_report(
        ctx.run, config=ctx.cfg.to_dict(), cohort_summary=ctx.cohort.summary(), protocol=ctx.splits.protocol
    )
