"""The small HTML page of ``survpgc predict`` (autoescaped Jinja2, the run report's look)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["MAX_ROWS", "render_predictions"]

#: Patients listed in the page (the CSV holds all of them).
MAX_ROWS = 500


def render_predictions(
    bundle: Any, cohort_name: str, df: Any, csv_name: str, heatmaps: dict[str, list[tuple[str, str]]] | None = None
) -> str:
    """``predict.html`` for the predictions ``df`` of ``bundle`` on cohort ``cohort_name``; ``heatmaps``: per case
    the (label, relative link) of its heatmaps, shown in a last column."""
    from survpgc import __version__
    from survpgc.report.templating import render

    shown = ["case_id", "risk", "risk_group", *[c for c in df.columns if c.startswith("S_")], "modalities"]
    rows = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r] for r in df[shown].head(MAX_ROWS).itertuples(
        index=False
    )]  # fmt: skip
    groups = df["risk_group"].value_counts().to_dict()
    summary = [
        ("model", f"{bundle.model_id} ({bundle.model_name})"),
        ("cohort", cohort_name),
        ("patients", str(len(df))),
        ("risk groups", ", ".join(f"{k}: {v}" for k, v in sorted(groups.items()))),
        ("modalities present", ", ".join(f"{k}: {v}" for k, v in df["modalities"].value_counts().items())),
    ]
    return render(
        "predict.html.j2",
        title=f"survpgc predictions: {bundle.model_id} on {cohort_name}",
        version=__version__,
        created=datetime.now().strftime("%Y-%m-%d %H:%M"),
        bundle_path=str(bundle.path),
        kind=bundle.kind,
        summary=summary,
        csv_name=csv_name,
        cutoff=f"{bundle.risk_cutoff:.4f}",
        columns=shown,
        rows=rows,
        truncated=len(df) > MAX_ROWS,
        n_cases=len(df),
        card=bundle.card,
        heatmaps=heatmaps or {},
    )
