"""The self-contained HTML report of a cross-validated run (``report.html``).

One file, nothing fetched: CSS is inline, images are inlined as base64 ``data:`` URIs, there is no
JavaScript (collapsible parts use ``<details>``).  The page can be mailed or archived as is.

Every string that comes from the run (model names, cohort fields, notes, config values, image labels) is
HTML-escaped.  The only raw HTML is the fragment of each ``extra_sections`` entry, which is the caller's
own markup (e.g. a heatmap gallery built by survpgc) and must itself be self-contained.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import math
import numbers
import os
import platform
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from survpgc.files import atomic_write_bytes
from survpgc.report.plots import LOWER_IS_BETTER, METRIC_LABELS, format_p_value

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "REPORT_TEMPLATE",
    "escape",
    "figure_html",
    "frame_table_html",
    "mean_sd",
    "render_report",
    "write_report",
]

log = logging.getLogger(__name__)

_METRIC_ORDER = ("cindex", "cindex_uno", "auc_12", "auc_36", "auc_60", "iauc", "ibs")
_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
_EXTERNAL_REF = re.compile(r"""(?:src|href|url)\s*(?:=|\()\s*["']?\s*(?:https?:|file:|//)""", re.IGNORECASE)

_CSS = """
:root { --ink: #1d2433; --muted: #5b6475; --line: #d9dee7; --band: #f4f6f9; --accent: #0f4c5c; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 18px; padding-bottom: 10px; }
h1 { margin: 0 0 4px; font-size: 26px; color: var(--accent); }
h2 { margin: 30px 0 10px; font-size: 20px; color: var(--accent); border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
h3 { margin: 18px 0 8px; font-size: 16px; }
.meta { color: var(--muted); font-size: 14px; }
nav { font-size: 14px; margin: 8px 0 0; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
nav a:hover { text-decoration: underline; }
.warning { border: 2px solid #b42318; background: #fef3f2; color: #7a271a; padding: 12px 16px;
           border-radius: 6px; margin: 16px 0; font-size: 15px; }
.warning strong { color: #b42318; font-size: 16px; }
.protocol { border-left: 4px solid var(--accent); background: var(--band); padding: 8px 14px; margin: 16px 0; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 14px; }
.scroll { max-width: 100%; overflow-x: auto; }
table.metrics { font-size: 13px; }
table.metrics th, table.metrics td { padding: 4px 6px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.best { font-weight: 700; }
.badge { display: inline-block; white-space: nowrap; font-size: 12px; padding: 0 6px; border-radius: 4px;
         background: #fee4e2; color: #b42318; }
.grid { display: flex; flex-wrap: wrap; gap: 18px 28px; align-items: flex-start; }
figure { margin: 0 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figure.km img { width: 560px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 2px; }
details { margin: 8px 0 14px; }
summary { cursor: pointer; color: var(--accent); font-weight: 600; }
pre { background: var(--band); border: 1px solid var(--line); padding: 12px; overflow-x: auto;
      font-size: 13px; line-height: 1.4; }
.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line);
         padding-top: 8px; }
"""

#: The page skeleton (:class:`string.Template`; every ``$name`` is filled with already-escaped HTML).
REPORT_TEMPLATE = string.Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="survpgc $version">
<title>$title</title>
<style>$css</style>
</head>
<body>
<main>
<header>
<h1>$title</h1>
<div class="meta">$meta_line</div>
<nav>$nav</nav>
</header>
$protocol_box
<section id="run">
<h2>Run</h2>
$run_table
</section>
<section id="cohort">
<h2>Cohort</h2>
$cohort
</section>
<section id="metrics">
<h2>Metrics (mean ± sd over folds)</h2>
$metrics_table
$fold_details
</section>
<section id="comparisons">
<h2>Comparisons</h2>
$comparisons_table
</section>
<section id="figures">
<h2>Figures</h2>
$figures
</section>
$notes
$extra
<section id="config">
<h2>Configuration</h2>
<details><summary>Resolved configuration</summary>
<pre>$config</pre>
</details>
</section>
<footer>Generated by survpgc $version on $created. Self-contained page: no external resources.</footer>
</main>
</body>
</html>
"""
)


# --------------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    """HTML-escape ``str(value)`` (quotes included)."""
    return html.escape(str(value), quote=True)


def _is_missing(value: Any) -> bool:
    """None, NaN, NA, NaT (scalars only)."""
    if value is None:
        return True
    import pandas as pd

    try:
        missing = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(missing) if isinstance(missing, bool) or getattr(missing, "shape", None) == () else False


def _num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (integers as integers); ``n/a`` for None / NaN / inf."""
    if _is_missing(value):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return "n/a"
    return f"{f:.{digits}f}"


def mean_sd(mean: Any, sd: Any) -> str:
    """``mean ± sd`` with 3 decimals; the mean alone when sd is missing; ``n/a`` when the mean is."""
    if _is_missing(mean):
        return "n/a"
    return f"{_num(mean)} ± {_num(sd)}" if not _is_missing(sd) else _num(mean)


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Sequence[bool] | None = None,
    css_class: str | None = None,
) -> str:
    """An HTML table; ``header`` is escaped here, cells must already be HTML."""
    numeric = list(numeric) if numeric is not None else [False] * len(header)
    num_attr = ' class="num"'
    head = "".join(f"<th{num_attr if n else ''}>{_e(h)}</th>" for h, n in zip(header, numeric, strict=True))
    body = []
    for row in rows:
        cells = []
        for cell, n in zip(row, numeric, strict=True):
            cls = []
            if n:
                cls.append("num")
            if isinstance(cell, _Best):
                cls.append("best")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    table_attr = f' class="{_e(css_class)}"' if css_class else ""
    return (
        f'<div class="scroll"><table{table_attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


class _Best(str):
    """A cell string rendered in bold (best value of its column)."""


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _is_empty_frame(df: pd.DataFrame | None) -> bool:
    return df is None or len(df) == 0


def _plain(obj: Any) -> Any:
    """Config values as YAML-safe Python (dicts, lists, str, numbers, bool, None)."""
    import dataclasses

    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, list | tuple | set | frozenset):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool | int | float | str) or obj is None:
        return obj
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    return str(obj)


def _config_text(config: Any) -> str:
    if config is None:
        return "(not recorded)"
    plain = _plain(config)
    try:
        import yaml

        return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False)
    except Exception:  # pragma: no cover - pyyaml is a dependency; JSON is the fallback
        import json

        return json.dumps(plain, indent=2, ensure_ascii=False)


def _protocol_label(protocol: str) -> str:
    from survpgc.data.splits import protocol_label

    try:
        return protocol_label(protocol)
    except Exception:
        log.warning("report: unknown protocol %r, shown as given", protocol)
        return str(protocol)


# --------------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------------
def _protocols_in(protocol: str, summary: pd.DataFrame | None) -> list[str]:
    found = [str(protocol)]
    if not _is_empty_frame(summary) and "protocol" in summary.columns:
        found += [str(p) for p in summary["protocol"].dropna().unique()]
    return list(dict.fromkeys(found))


def _protocol_box(protocols: list[str]) -> str:
    boxes = []
    if "paper" in protocols:
        boxes.append(
            '<div class="warning" role="alert"><strong>&#9888; Optimistic protocol.</strong> '
            f"{_e(_protocol_label('paper'))}. These numbers select the model on the test fold and are not an "
            "honest estimate of performance on new patients; compare with a <code>nested</code> run.</div>"
        )
    others = [p for p in protocols if p != "paper"]
    for p in others:
        boxes.append(f'<div class="protocol"><strong>Protocol</strong>: {_e(_protocol_label(p))}</div>')
    return "\n".join(boxes)


def _run_table(
    *, created: str, protocol: str, cohort_summary: Mapping[str, Any] | None, summary: Any, metrics: Any
) -> str:
    from survpgc import __version__

    rows = [
        ("Generated", created),
        ("survpgc version", __version__),
        ("Protocol", _protocol_label(protocol)),
        ("Python", f"{platform.python_version()} ({platform.system()} {platform.machine()})"),
    ]
    if cohort_summary and cohort_summary.get("name") is not None:
        rows.insert(1, ("Cohort", cohort_summary.get("name")))
    if not _is_empty_frame(summary) and "model" in summary.columns:
        rows.append(("Models", ", ".join(str(m) for m in summary["model"].astype(str).unique())))
    if not _is_empty_frame(metrics) and "fold" in metrics.columns:
        rows.append(("Folds", str(metrics["fold"].nunique())))
    return _table(["Item", "Value"], [(_e(k), _e(v)) for k, v in rows])


def _cohort_section(cohort: Mapping[str, Any] | None) -> str:
    if not cohort:
        return _empty("No cohort summary recorded.")
    n_cases = cohort.get("n_cases")
    rows: list[tuple[str, str]] = []
    known = {
        "name": "Name",
        "endpoint": "Endpoint",
        "n_cases": "Cases (patients)",
        "n_events": "Events (deaths)",
        "censoring_rate": "Censoring rate",
        "time_median_months": "Median time (months)",
        "time_range_months": "Time range (months)",
        "n_slides": "Slides",
        "n_omics_features": "Omics features",
    }
    for key, label in known.items():
        if key not in cohort:
            continue
        v = cohort[key]
        if key == "censoring_rate" and not _is_missing(v):
            text = f"{100 * float(v):.1f} %"
        elif key == "time_range_months" and isinstance(v, Sequence) and len(v) == 2:
            text = f"{_num(v[0], 1)} – {_num(v[1], 1)}"
        elif key == "time_median_months":
            text = _num(v, 1)
        else:
            text = _num(v) if isinstance(v, int | float) and not isinstance(v, bool) else str(v)
        rows.append((_e(label), _e(text)))
    skip = set(known) | {"coverage", "combinations", "clinical_missing", "notes"}
    for key, v in cohort.items():
        if key not in skip:
            rows.append((_e(key), _e(v)))
    parts = ['<div class="grid"><div>', "<h3>Overview</h3>", _table(["Field", "Value"], rows), "</div>"]

    def pct(count: Any) -> str:
        if _is_missing(count) or not n_cases:
            return "n/a"
        return f"{100 * float(count) / float(n_cases):.0f} %"

    coverage = cohort.get("coverage") or {}
    if coverage:
        parts += [
            "<div><h3>Modality coverage</h3>",
            _table(
                ["Modality", "Cases", "Share"],
                [(_e(k), _e(_num(v)), _e(pct(v))) for k, v in coverage.items()],
                numeric=[False, True, True],
            ),
            "</div>",
        ]
    combos = cohort.get("combinations") or {}
    if combos:
        parts += [
            "<div><h3>Modality combinations</h3>",
            _table(["Combination", "Cases"], [(_e(k), _e(_num(v))) for k, v in combos.items()], numeric=[False, True]),
            "</div>",
        ]
    parts.append("</div>")
    missing = cohort.get("clinical_missing") or {}
    if missing:
        parts += [
            "<details><summary>Missing clinical values per field</summary>",
            _table(
                ["Field", "Missing", "Share"],
                [(_e(k), _e(_num(v)), _e(pct(v))) for k, v in missing.items()],
                numeric=[False, True, True],
            ),
            "</details>",
        ]
    notes = cohort.get("notes") or []
    if notes:
        parts.append("<h3>Cohort notes</h3><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(parts)


def _summary_metrics(summary: pd.DataFrame) -> list[str]:
    present = [c[: -len("_mean")] for c in summary.columns if str(c).endswith("_mean")]
    return [m for m in _METRIC_ORDER if m in present] + [m for m in present if m not in _METRIC_ORDER]


def _metrics_table(summary: pd.DataFrame | None) -> str:
    if _is_empty_frame(summary):
        return _empty("No summary metrics.")
    import pandas as pd

    metric_names = _summary_metrics(summary)
    best: dict[str, float] = {}
    for m in metric_names:
        vals = pd.to_numeric(summary[f"{m}_mean"], errors="coerce")
        if vals.nunique(dropna=True) > 1:
            best[m] = float(vals.min() if m in LOWER_IS_BETTER else vals.max())
    header = ["Model"]
    numeric = [False]
    has_protocol = "protocol" in summary.columns
    if has_protocol:
        header.append("Protocol")
        numeric.append(False)
    if "n_folds" in summary.columns:
        header.append("Folds")
        numeric.append(True)
    for m in metric_names:
        header.append(METRIC_LABELS.get(m, m) + (" ↓" if m in LOWER_IS_BETTER else ""))
        numeric.append(True)
    rows = []
    for _, r in summary.iterrows():
        row: list[str] = [_e(r["model"]) if "model" in summary.columns else ""]
        if has_protocol:
            p = r["protocol"]
            row.append('<span class="badge">paper · optimistic</span>' if str(p) == "paper" else _e(p))
        if "n_folds" in summary.columns:
            row.append(_e(_num(r["n_folds"])))
        for m in metric_names:
            mean = r[f"{m}_mean"]
            sd = r[f"{m}_sd"] if f"{m}_sd" in summary.columns else None
            text = _e(mean_sd(mean, sd))
            if m in best and not _is_missing(mean) and float(mean) == best[m]:
                text = _Best(text)
            row.append(text)
        rows.append(row)
    note = (
        '<p class="meta">Mean ± sample sd over folds; bold = best per column (↓: lower is better). '
        "C-index 0.5 = random ranking.</p>"
    )
    return _table(header, rows, numeric=numeric, css_class="metrics") + note


def _frame_table(df: pd.DataFrame, digits: int = 3) -> str:
    header = [str(c) for c in df.columns]
    numeric = [df[c].dtype.kind in "iuf" for c in df.columns]
    rows = [
        [_e(_num(v, digits)) if n else _e(v) for v, n in zip(rec, numeric, strict=True)]
        for rec in df.itertuples(index=False)
    ]
    return _table(header, rows, numeric=numeric)


def _fold_details(metrics: pd.DataFrame | None) -> str:
    if _is_empty_frame(metrics):
        return ""
    df = metrics.sort_values([c for c in ("model", "fold") if c in metrics.columns], kind="stable")
    return (
        f"<details><summary>Per-fold metrics ({len(df)} rows)</summary>\n"
        + _frame_table(df.reset_index(drop=True))
        + "</details>"
    )


def _comparisons_table(comparisons: pd.DataFrame | None) -> str:
    if _is_empty_frame(comparisons):
        return _empty("No comparisons (a single model, or no reference).")
    cols = set(comparisons.columns)
    header = ["Model", "Reference", "ΔC-index", "95 % CI", "p"]
    rows = []
    for _, r in comparisons.iterrows():
        delta = r.get("delta_cindex")
        d = "n/a" if _is_missing(delta) else f"{float(delta):+.3f}"
        lo, hi = r.get("ci_low"), r.get("ci_high")
        ci = "n/a" if _is_missing(lo) or _is_missing(hi) else f"[{float(lo):+.3f}, {float(hi):+.3f}]"
        p = r.get("p_value")
        rows.append([_e(r.get("model", "")), _e(r.get("reference", "")), _e(d), _e(ci), _e(format_p_value(p))])
    extra = [
        c
        for c in comparisons.columns
        if c not in {"model", "reference", "delta_cindex", "ci_low", "ci_high", "p_value"}
    ]
    if extra:
        header += [str(c) for c in extra]
        for row, (_, r) in zip(rows, comparisons.iterrows(), strict=True):
            row += [_e(_num(r[c])) for c in extra]
    numeric = [False, False, True, True, True] + [False] * len(extra)
    note = (
        '<p class="meta">Fold-stratified paired bootstrap of the test predictions (cases resampled within each '
        "fold, the same resamples for both models): ΔC-index = mean over folds of C(model) − C(reference), "
        "percentile 95 % interval, two-sided bootstrap p.</p>"
        if {"delta_cindex", "p_value"} <= cols
        else ""
    )
    return _table(header, rows, numeric=numeric) + note


def _image_tag(label: str, path: Path, jpeg_max_width: int | None = None) -> str:
    """The image inlined as a ``data:`` URI; with ``jpeg_max_width`` a JPEG copy at most that wide (for big
    photographic figures such as slide heatmaps; the full-resolution file stays where it is)."""
    path = Path(path)
    mime = "image/jpeg" if jpeg_max_width else _IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        log.warning("report: image %s has an unsupported type, left out", path)
        return _empty(f"{label}: unsupported image type {path.suffix!r}")
    try:
        data = _jpeg_bytes(path, jpeg_max_width) if jpeg_max_width else path.read_bytes()
    except OSError as exc:  # PIL's UnidentifiedImageError is an OSError too
        log.warning("report: image %s not readable (%s), left out", path, exc)
        return _empty(f"{label}: image missing ({path.name})")
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img src="data:{mime};base64,{b64}" alt="{_e(label)}">'


def _jpeg_bytes(path: Path, max_width: int) -> bytes:
    import io

    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if rgb.width > max_width:
        rgb = rgb.resize((max_width, max(1, round(rgb.height * max_width / rgb.width))), Image.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def figure_html(
    label: str,
    path: str | os.PathLike[str],
    caption: str | None = None,
    *,
    jpeg_max_width: int | None = None,
    css_class: str | None = None,
) -> str:
    """One inlined image with its caption (``label`` unless given); see :func:`_image_tag` for
    ``jpeg_max_width``."""
    cls = f' class="{_e(css_class)}"' if css_class else ""
    cap = _e(label if caption is None else caption)
    return f"<figure{cls}>{_image_tag(label, Path(path), jpeg_max_width)}<figcaption>{cap}</figcaption></figure>"


def frame_table_html(df: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as an escaped HTML table in the report's style."""
    return _frame_table(df, digits)


def escape(value: Any) -> str:
    """HTML-escape ``value`` (str() first)."""
    return _e(value)


def _figures(images: Mapping[str, str | os.PathLike[str]]) -> str:
    if not images:
        return _empty("No figures.")
    km = {k: v for k, v in images.items() if str(k).lower().startswith("km")}
    other = {k: v for k, v in images.items() if k not in km}
    parts = []
    if km:
        parts.append("<h3>Kaplan–Meier curves (high vs low predicted risk, pooled test folds)</h3>")
        parts.append(
            '<p class="meta">Cut-off per fold: the median of that fold\'s training-part risks; '
            "test cases above it are high risk. Log-rank p on the pooled test predictions.</p>"
        )
        parts.append(
            '<div class="grid">' + "".join(figure_html(str(k), v, css_class="km") for k, v in km.items()) + "</div>"
        )
    if other:
        parts.append("<h3>Model comparison</h3>" if km else "")
        parts += [figure_html(str(k), v) for k, v in other.items()]
    return "\n".join(parts)


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>'


def _extra(extra_sections: Sequence[tuple[str, str]]) -> str:
    parts = []
    for i, (title, fragment) in enumerate(extra_sections):
        if _EXTERNAL_REF.search(fragment or ""):
            log.warning("report: extra section %r references external resources; the page is not self-contained", title)
        parts.append(f'<section id="extra-{i}"><h2>{_e(title)}</h2>\n{fragment}\n</section>')
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def render_report(
    *,
    cohort_summary: Mapping[str, Any] | None,
    protocol: str,
    config: Any,
    summary: pd.DataFrame | None,
    metrics: pd.DataFrame | None,
    comparisons: pd.DataFrame | None,
    images: Mapping[str, str | os.PathLike[str]],
    notes: Sequence[str] = (),
    extra_sections: Sequence[tuple[str, str]] = (),
    title: str = "survpgc cross-validation report",
    created: str | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_report` for the arguments)."""
    from survpgc import __version__

    if created is None:
        created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    protocols = _protocols_in(protocol, summary)
    extra_sections = list(extra_sections)
    nav_items = [
        ("run", "Run"),
        ("cohort", "Cohort"),
        ("metrics", "Metrics"),
        ("comparisons", "Comparisons"),
        ("figures", "Figures"),
    ]
    if notes:
        nav_items.append(("notes", "Notes"))
    nav_items += [(f"extra-{i}", t) for i, (t, _f) in enumerate(extra_sections)]
    nav_items.append(("config", "Configuration"))
    nav = "".join(f'<a href="#{_e(a)}">{_e(t)}</a>' for a, t in nav_items)
    protocol_text = ", ".join(protocols)
    meta_line = _e(f"Generated {created} · survpgc {__version__} · protocol: {protocol_text}")
    return REPORT_TEMPLATE.substitute(
        version=_e(__version__),
        title=_e(title),
        css=_CSS,
        meta_line=meta_line,
        nav=nav,
        protocol_box=_protocol_box(protocols),
        run_table=_run_table(
            created=created, protocol=protocol, cohort_summary=cohort_summary, summary=summary, metrics=metrics
        ),
        cohort=_cohort_section(cohort_summary),
        metrics_table=_metrics_table(summary),
        fold_details=_fold_details(metrics),
        comparisons_table=_comparisons_table(comparisons),
        figures=_figures(images or {}),
        notes=_notes(list(notes)),
        extra=_extra(extra_sections),
        config=_e(_config_text(config)),
        created=_e(created),
    )


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    cohort_summary: Mapping[str, Any] | None,
    protocol: str,
    config: Any,
    summary: pd.DataFrame | None,
    metrics: pd.DataFrame | None,
    comparisons: pd.DataFrame | None,
    images: Mapping[str, str | os.PathLike[str]],
    notes: Sequence[str] = (),
    extra_sections: Sequence[tuple[str, str]] = (),
    title: str = "survpgc cross-validation report",
    filename: str = "report.html",
    created: str | None = None,
) -> Path:
    """Write the run's self-contained ``report.html`` and return its path.

    Parameters
    ----------
    run_dir : path-like
        The run directory (created if needed); the file is ``run_dir / filename``, written atomically.
    cohort_summary : mapping or None
        :meth:`survpgc.data.cohort.Cohort.summary` (name, endpoint, n_cases, n_events, censoring_rate,
        time_median_months, coverage, combinations, clinical_missing, ...).
    protocol : str
        ``nested`` | ``paper`` | ``last-epoch``.  ``paper`` -- or any ``paper`` row in ``summary['protocol']``
        -- shows a red warning box with :func:`~survpgc.data.splits.protocol_label` (OPTIMISTIC).
    config : mapping, dataclass or None
        The resolved configuration, shown as YAML.
    summary : DataFrame or None
        One row per model: ``model``, ``n_folds``, ``protocol``, ``<metric>_mean``, ``<metric>_sd``;
        shown as ``mean ± sd`` with 3 decimals, best per column in bold.
    metrics : DataFrame or None
        One row per (model, fold); shown in a collapsible ``<details>`` table.
    comparisons : DataFrame or None
        ``model, reference, delta_cindex, ci_low, ci_high, p_value``.
    images : mapping label -> path
        PNG (or JPEG / SVG ...) files inlined as base64 ``data:`` URIs, in the given order; labels starting
        with ``km`` go under "Kaplan–Meier curves", the others (forest plot ...) under "Model comparison".
        A missing file is reported in the page and the log instead of failing the run.
    notes : sequence of str
        Free-text notes (escaped), e.g. the oracle C-index or warnings of the run.
    extra_sections : sequence of (title, html_fragment)
        Appended sections (heatmaps, attributions).  The title is escaped; the fragment is inserted as
        is -- it must be trusted, self-contained HTML (a warning is logged if it references http(s)/file
        resources).
    title : str
        Page title.
    filename : str
        Default ``report.html``.
    created : str, optional
        Timestamp shown in the page (default: now, UTC); pass one for byte-identical reports.
    """
    page = render_report(
        cohort_summary=cohort_summary,
        protocol=protocol,
        config=config,
        summary=summary,
        metrics=metrics,
        comparisons=comparisons,
        images=images,
        notes=notes,
        extra_sections=extra_sections,
        title=title,
        created=created,
    )
    path = Path(run_dir) / filename
    atomic_write_bytes(path, page.encode("utf-8"))
    log.info("wrote %s (%d kB)", path, len(page) // 1024)
    return path
