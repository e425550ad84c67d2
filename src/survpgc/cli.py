"""Command-line interface: thin typer glue over library functions.

Only typer is imported at module level; every command imports what it needs inside its body so that
``survpgc --help`` stays instant.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

app = typer.Typer(
    name="survpgc",
    help=(
        "survpgc: multimodal cancer survival prediction (SurvPGC and baselines).\n\n"
        "Convention everywhere: time in months > 0, event True = death observed, risk higher = worse."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _LiveStderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (robust to test runners swapping streams)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _LiveStderrHandler) for h in root.handlers):
        handler = _LiveStderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    logging.getLogger("survpgc").setLevel(logging.DEBUG if verbose else logging.INFO)


@app.command()
def version() -> None:
    """Print the survpgc version."""
    from survpgc import __version__

    typer.echo(__version__)


cohort_app = typer.Typer(help="Inspect cohorts (built-in names such as tcga-lihc, or TCGA-layout folders).")
app.add_typer(cohort_app, name="cohort")


_TIME_UNIT_HELP = "Unit of the survival times in the table: days | weeks | months | years (converted to months)."
_OMICS_NONFINITE_HELP = "NaN/inf omics values: error | drop_columns | zero."


def _open(
    source: str,
    endpoint: str,
    feature_dir: str | None,
    on_invalid: str,
    time_unit: str = "months",
    omics_nonfinite: str = "error",
):
    from survpgc.data.cohort import open_cohort
    from survpgc.errors import InputError

    for name, value, choices in (
        ("--time-unit", time_unit, ("days", "weeks", "months", "years")),
        ("--omics-nonfinite", omics_nonfinite, ("error", "drop_columns", "zero")),
    ):
        if value not in choices:
            raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return open_cohort(
        source,
        endpoint=endpoint,
        feature_dir=feature_dir,
        on_invalid_survival=on_invalid,
        time_unit=time_unit,
        omics_nonfinite=omics_nonfinite,
    )


@cohort_app.command("info")
def cohort_info(
    source: str = typer.Argument(..., help="Built-in name (tcga-lihc) or a folder with cohort.csv [+ omics.csv.gz]."),
    endpoint: str = typer.Option("os", help="os | dss | pfs"),
    feature_dir: str | None = typer.Option(None, help="Folder of <slide stem>.h5 / .pt feature files."),
    on_invalid: str = typer.Option("error", help="Invalid survival rows: error | drop."),
    time_unit: str = typer.Option("months", "--time-unit", help=_TIME_UNIT_HELP),
    omics_nonfinite: str = typer.Option("error", "--omics-nonfinite", help=_OMICS_NONFINITE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Cases, events, censoring, follow-up and modality coverage of a cohort."""
    import json

    from rich.console import Console
    from rich.table import Table

    cohort = _open(source, endpoint, feature_dir, on_invalid, time_unit, omics_nonfinite)
    s = cohort.summary()
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    con = Console()
    con.print(f"[bold]{s['name']}[/bold] ({s['endpoint'].upper()})")
    con.print(
        f"cases {s['n_cases']}  events {s['n_events']}  censored {s['censoring_rate']:.1%}  "
        f"median follow-up {s['time_median_months']:.1f} months  "
        f"range {s['time_range_months'][0]:.2f}-{s['time_range_months'][1]:.1f}"
    )
    con.print(f"slides {s['n_slides']}  omics features {s['n_omics_features']}")
    t = Table("modality", "cases")
    for k, v in s["coverage"].items():
        t.add_row(k, str(v))
    con.print(t)
    t = Table("combination of modalities", "cases")
    for k, v in s["combinations"].items():
        t.add_row(k, str(v))
    con.print(t)
    missing = {k: v for k, v in s["clinical_missing"].items() if v}
    if missing:
        con.print("missing clinical values: " + ", ".join(f"{k} {v}" for k, v in missing.items()))
    for note in s.get("notes", []):
        con.print(f"[yellow]note:[/yellow] {note}")


splits_app = typer.Typer(help="Make, import and export patient-level cross-validation splits.")
app.add_typer(splits_app, name="splits")


@splits_app.command("make")
def splits_make(
    source: str = typer.Argument(..., help="Built-in name (tcga-lihc) or a TCGA-layout folder."),
    out: str = typer.Option(..., "--out", help="Folder to write fold_<k>.csv + splits.json into."),
    folds: int = typer.Option(5, help="Number of folds."),
    protocol: str = typer.Option("nested", help="nested | paper (optimistic: selection on test) | last-epoch"),
    val_fraction: float = typer.Option(0.15, help="Validation share of each training part (nested)."),
    seed: int = typer.Option(0, help="Random seed (same seed, same folds)."),
    endpoint: str = typer.Option("os", help="os | dss | pfs"),
    on_invalid: str = typer.Option("error", help="Invalid survival rows: error | drop."),
    time_unit: str = typer.Option("months", "--time-unit", help=_TIME_UNIT_HELP),
    omics_nonfinite: str = typer.Option("error", "--omics-nonfinite", help=_OMICS_NONFINITE_HELP),
) -> None:
    """Stratified (event × time) patient-level K-fold splits with a validation part per fold."""
    from survpgc.data.splits import make_splits

    cohort = _open(source, endpoint, None, on_invalid, time_unit, omics_nonfinite)
    s = make_splits(
        cohort.case_ids,
        cohort.time,
        cohort.event,
        n_folds=folds,
        val_fraction=val_fraction,
        protocol=protocol,
        seed=seed,
    )
    path = s.to_dir(out)
    ev = dict(zip(cohort.case_ids, cohort.event, strict=True))
    for f in s:
        typer.echo(
            f"fold {f.index}: train {len(f.train)}  val {len(f.val)}  test {len(f.test)} "
            f"(test events {sum(ev[c] for c in f.test)})"
        )
    typer.echo(f"protocol {s.label}")
    typer.echo(f"wrote {path}")


@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    params: bool = typer.Option(False, "--params", help="Also count parameters at the reference input dims."),
) -> None:
    """List the registered survival models, their required modalities and descriptions."""
    import json

    from survpgc.models import create_model, list_models

    rows = []
    for spec in list_models():
        row = {"name": spec.name, "modalities": list(spec.modalities), "description": spec.description}
        if params and spec.neural:
            row["parameters"] = create_model(spec.name).n_parameters()
        rows.append(row)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("model", "modalities", *(["parameters"] if params else []), "description")
    for r in rows:
        extra = [f"{r['parameters']:,}" if "parameters" in r else "-"] if params else []
        t.add_row(r["name"], " + ".join(r["modalities"]), *extra, r["description"])
    Console().print(t)


@app.command()
def synth(
    out: str = typer.Option(..., "--out", help="Folder to create (TCGA layout + slides/, masks/, truth.*)."),
    n_patients: int = typer.Option(40, "--n-patients", help="Number of patients."),
    seed: int = typer.Option(0, help="Same seed, byte-identical files."),
    width: int = typer.Option(3072, help="Level-0 slide width in pixels."),
    height: int = typer.Option(2048, help="Level-0 slide height in pixels."),
    censoring: str = typer.Option(
        "0.6,0.8",
        help="Censoring: a target rate (0.7: the attainable rate closest to it, within 0.65-0.75) or a range "
        "LO,HI (the realised rate is the attainable one closest to its middle).",
    ),
    planted_fraction: str = typer.Option(
        "0.08,0.65",
        "--planted-fraction",
        help="LO,HI range of the uniform tumour-texture target fraction of each slide's tissue (the texture "
        "score is standardised with this range).",
    ),
    signal: str = typer.Option(
        "pathology=1,clinical=1,genomic=1",
        help="Multipliers of the true-risk coefficients per modality: pathology (texture), clinical (stage, "
        "age), genomic (pathway); a modality not named keeps 1, 0 removes its signal.",
    ),
    omics_noise: float = typer.Option(
        1.0,
        "--omics-noise",
        help="Multiplier of the pathway genes' expression noise around their pathway activity (larger hides "
        "the genomic signal; 1 = unit-variance genes).",
    ),
    frailty_sd: float = typer.Option(
        0.0,
        "--frailty-sd",
        help="Sd of an unobserved frailty added to the log hazard, carried by no modality (the oracle stays "
        "the C-index of the true risk; 0 = none).",
    ),
    no_slides: bool = typer.Option(False, "--no-slides", help="Write tables and masks only (fast)."),
    overwrite: bool = typer.Option(False, help="Replace a non-empty --out folder."),
) -> None:
    """Write a synthetic tri-modal cohort with known ground truth (slides, clinical, omics, survival)."""
    from survpgc.locks import output_dir
    from survpgc.synth import generate_synthetic_cohort
    from survpgc.synth.options import parse_numbers, parse_signal

    knobs = {
        "censoring": parse_numbers(censoring, "--censoring"),
        "planted_fraction": parse_numbers(planted_fraction, "--planted-fraction", single=False),
        "signal": parse_signal(signal, "--signal"),
        "omics_noise": omics_noise,
        "frailty_sd": frailty_sd,
    }
    with output_dir(out):
        res = generate_synthetic_cohort(
            out,
            n_patients=n_patients,
            seed=seed,
            slide_size=(width, height),
            render_slides=not no_slides,
            overwrite=overwrite,
            **knobs,
        )
    full = "" if res.cindex_log_hazard is None else f"; of the full log hazard with frailty {res.cindex_log_hazard:.3f}"
    typer.echo(
        f"wrote {res.n_patients} patients to {res.out_dir} in {res.seconds:.1f} s: "
        f"censoring {res.censoring_rate:.0%}, C-index of the true risk {res.cindex_true:.3f} (oracle ceiling){full}"
    )


def _survival_table(
    path: str, time_col: str, event_col: str | None, censorship_col: str | None, time_unit: str = "months"
):
    """Read time / event (or censorship) from a table, converting at the boundary (``time_unit`` to months)."""
    from survpgc.data.cohort import months_per_unit, read_table, time_unit_warning
    from survpgc.errors import DataError
    from survpgc.survival import check_survival, event_from_censorship

    factor = months_per_unit(time_unit)
    df = read_table(path)
    ev_col = event_col if event_col else censorship_col
    if ev_col is None or ev_col not in df.columns:
        # default: `event` when present, else `censorship`
        ev_col = "event" if "event" in df.columns else ("censorship" if "censorship" in df.columns else None)
        censorship_col = "censorship" if ev_col == "censorship" else None
    for col in (time_col, ev_col):
        if col is None or col not in df.columns:
            raise DataError(f"{path}: needs columns {time_col!r} and 'event' (or 'censorship'); has {list(df.columns)}")
    _bad_lines(path, df, time_col, ev_col)
    event = event_from_censorship(df[ev_col], name=f"{path}:{ev_col}") if ev_col == censorship_col else df[ev_col]
    t, e = check_survival(df[time_col], event, time_name=f"{path}:{time_col}", event_name=f"{path}:{ev_col}")
    warning = time_unit_warning(t, time_unit, path)
    if warning:
        logging.getLogger("survpgc.cli").warning("%s", warning)
    return df, t * factor, e


def _bad_lines(path: str, df, time_col: str, ev_col: str) -> None:
    """Refuse invalid times or event flags naming the file's lines (line 1 is the header)."""
    import numpy as np
    import pandas as pd

    from survpgc.errors import DataError

    def lines(mask, col: str) -> str:
        idx = np.flatnonzero(np.asarray(mask))
        shown = ", ".join(f"{i + 2} ({df[col].iloc[i]})" for i in idx[:5])
        return shown + (f" and {len(idx) - 5} more" if len(idx) > 5 else "")

    t = pd.to_numeric(df[time_col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(t) | (t <= 0)
    if bad.any():
        raise DataError(f"{path}: column {time_col!r} must hold times > 0; bad value(s) at line {lines(bad, time_col)}")
    ev = pd.to_numeric(df[ev_col].replace({True: 1, False: 0}), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(ev, [0.0, 1.0])
    if bad.any():
        raise DataError(f"{path}: column {ev_col!r} must hold 0/1; bad value(s) at line {lines(bad, ev_col)}")


@app.command()
def evaluate(
    predictions: str = typer.Argument(..., help="CSV/TSV with time, event (or censorship) and risk columns."),
    train: str | None = typer.Option(
        None, help="Training-set table (time, event) for the censoring distribution (Uno C, AUC, Brier)."
    ),
    risk_col: str = typer.Option("risk", help="Risk column (higher = worse)."),
    time_col: str = typer.Option("time", help="Time column (months, or see --time-unit)."),
    time_unit: str = typer.Option("months", "--time-unit", help=_TIME_UNIT_HELP),
    event_col: str | None = typer.Option(None, help="Event column (1 = death). Default: 'event'."),
    censorship_col: str | None = typer.Option(None, help="Censorship column (1 = censored), instead of event."),
    times: str = typer.Option("12,36,60", help="Comma-separated months for time-dependent AUC."),
    n_bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the C-index CI (0 = none)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Survival metrics of a prediction table: Harrell C (+ bootstrap CI), Uno C, td-AUC and iAUC."""
    import json

    import numpy as np

    from survpgc.errors import DataError, SurvpgcError
    from survpgc.survival import bootstrap_cindex, check_risk, harrell_cindex, td_auc, uno_cindex

    df, t, e = _survival_table(predictions, time_col, event_col, censorship_col, time_unit)
    if risk_col not in df.columns:
        raise DataError(f"{predictions}: risk column {risk_col!r} not found; has {list(df.columns)}")
    r = check_risk(df[risk_col], len(t), name=f"{predictions}:{risk_col}")
    out: dict[str, object] = {"n": len(t), "events": int(e.sum()), "harrell_cindex": harrell_cindex(t, e, r)}
    if n_bootstrap:
        _est, lo, hi = bootstrap_cindex(t, e, r, n=n_bootstrap, seed=seed)
        out["harrell_cindex_95ci"] = [lo, hi]
    if train:
        _, tt, te = _survival_table(train, time_col, event_col, censorship_col, time_unit)
        out["uno_cindex"] = uno_cindex(tt, te, t, e, r)
        grid = np.array([float(x) for x in times.split(",") if x.strip()])
        ok = grid[(grid >= t.min()) & (grid < min(t.max(), tt.max()))]
        if len(ok) < len(grid):
            out["auc_times_skipped"] = [float(x) for x in grid if x not in ok]
        if len(ok):
            try:
                aucs, iauc = td_auc(tt, te, t, e, r, ok)
                out["auc"] = {f"{x:g}": float(a) for x, a in zip(ok, aucs, strict=True)}
                out["iauc"] = iauc
            except SurvpgcError as exc:
                out["auc_error"] = str(exc)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"cases {out['n']}  events {out['events']}")
    ci = out.get("harrell_cindex_95ci")
    typer.echo(f"Harrell C-index {out['harrell_cindex']:.4f}" + (f"  95% CI [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
    if "uno_cindex" in out:
        typer.echo(f"Uno C-index     {out['uno_cindex']:.4f}")
    for k, v in out.get("auc", {}).items():
        typer.echo(f"AUC at {k} months {v:.4f}")
    if "iauc" in out:
        typer.echo(f"iAUC            {out['iauc']:.4f}")
    if out.get("auc_times_skipped"):
        typer.echo(f"times outside the follow-up, skipped: {out['auc_times_skipped']}")
    if out.get("auc_error"):
        typer.echo(f"td-AUC not computed: {out['auc_error']}")


@app.command("prepare-omics")
def prepare_omics_cmd(
    cohort: str = typer.Option(..., "--cohort", help="Built-in name (tcga-lihc) or a TCGA-layout folder."),
    out: str = typer.Option(..., "--out", help="Folder for omics_selected.csv.gz, groups.json, coverage.*"),
    signatures: str = typer.Option(
        "combine", help="combine (331 pathways) | hallmarks (50) | families (6) | path to a signature CSV / .gmt."
    ),
    data_types: str = typer.Option("rnaseq", "--data-types", help="Comma-separated subset of rnaseq,cnv,mut."),
    min_coverage: float = typer.Option(
        0.0, "--min-coverage", help="Drop pathways whose measured / listed gene share is below this (0-1)."
    ),
    min_genes: int = typer.Option(1, "--min-genes", help="Drop pathways with fewer measured genes than this."),
    endpoint: str = typer.Option("os", help="os | dss | pfs"),
    on_invalid: str = typer.Option("error", help="Invalid survival rows: error | drop."),
    time_unit: str = typer.Option("months", "--time-unit", help=_TIME_UNIT_HELP),
    omics_nonfinite: str = typer.Option("error", "--omics-nonfinite", help=_OMICS_NONFINITE_HELP),
) -> None:
    """Select the signature genes of a cohort's omics table; write the matrix, groups and coverage report.

    The matrix is not normalised: normalisation is fitted per fold on the training cases.
    """
    from survpgc.genomics.prepare import prepare_omics

    res = prepare_omics(
        _open(cohort, endpoint, None, on_invalid, time_unit, omics_nonfinite),
        signatures,
        data_types,
        out_dir=out,
        min_coverage=min_coverage,
        min_genes=min_genes,
    )
    typer.echo(res.summary_text().rstrip())
    typer.echo(f"wrote {', '.join(p.name for p in res.files.values())} to {res.out_dir}")


@app.command("encode-clinical")
def encode_clinical_cmd(
    cohort: str = typer.Option(..., "--cohort", help="Built-in name (tcga-lihc) or a TCGA-layout folder."),
    out: str = typer.Option(..., "--out", help="Output folder: manifest.json, sentences.csv, tokens/<case>.pt."),
    encoder: str = typer.Option("minilm", help="minilm | conch | a local model folder | a cached hub id."),
    n_templates: int = typer.Option(1, "--n-templates", help="Template variants per field (N_t), one drawn per case."),
    seed: int = typer.Option(0, help="Seed of the per-(case, field) template draw."),
    templates: str | None = typer.Option(None, help="default | survpgc-paper | path to a template CSV."),
    missing_phrases: str | None = typer.Option(None, "--missing-phrases", help="CSV of missing-value phrases."),
    missing: str = typer.Option("phrase", help="Missing values: phrase ('... was not reported.') | mask (drop)."),
    fields: str | None = typer.Option(None, help="Comma-separated fields (default: the paper's six)."),
    allow_post_diagnosis: bool = typer.Option(
        False, "--allow-post-diagnosis", help="Allow treatment fields (recorded after diagnosis: outcome leakage)."
    ),
    device: str = typer.Option("cpu", help="cpu | cuda | auto."),
    batch_size: int = typer.Option(64, "--batch-size", help="Sentences per encoder batch."),
    overwrite: bool = typer.Option(False, help="Replace tokens of another configuration in --out."),
    endpoint: str = typer.Option("os", help="os | dss | pfs (used only to open the cohort)."),
    on_invalid: str = typer.Option("error", help="Invalid survival rows: error | drop."),
    time_unit: str = typer.Option("months", "--time-unit", help=_TIME_UNIT_HELP),
    omics_nonfinite: str = typer.Option("error", "--omics-nonfinite", help=_OMICS_NONFINITE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write clinical fields as sentences and encode them into per-case text tokens (n_fields x d)."""
    import json

    from survpgc.clinical.encode import encode_clinical_cli

    s = encode_clinical_cli(
        cohort,
        out,
        encoder=encoder,
        n_templates=n_templates,
        seed=seed,
        templates=templates,
        missing_phrases=missing_phrases,
        missing=missing,
        fields=fields,
        allow_post_diagnosis=allow_post_diagnosis,
        device=device,
        batch_size=batch_size,
        overwrite=overwrite,
        endpoint=endpoint,
        on_invalid=on_invalid,
        time_unit=time_unit,
        omics_nonfinite=omics_nonfinite,
    )
    typer.echo(json.dumps(s.as_dict(), indent=2) if as_json else s.describe())


@app.command("text-encoders")
def text_encoders_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the registered text encoders (dim, licence, gated weights, where weights are found)."""
    import json

    from survpgc.encoders.text import list_text_encoders

    rows = [s.as_dict() for s in list_text_encoders()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("encoder", "dim", "gated", "license", "weights")
    for r in rows:
        t.add_row(r["name"], str(r["dim"]), "yes" if r["gated"] else "no", r["license"], r["weights"])
    Console().print(t)


def _cli_config(config: str | None, overrides: list[str] | None):
    """The config of `run` / `config show`: a YAML file and overrides, or overrides only (when the first
    argument is ``key=value`` and no such file exists)."""
    from survpgc.config import load_config

    overrides = list(overrides or [])
    if config is not None and "=" in config and not Path(config).is_file():
        overrides.insert(0, config)  # no config file: the first argument is already an override
        config = None
    return load_config(config, overrides)


@app.command("run")
def run_cmd(
    config: str | None = typer.Argument(None, help="YAML run config (defaults when omitted)."),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. train.epochs=2"),
    out: str = typer.Option("runs/run", "--out", help="Run directory (rerun to resume)."),
    fold: list[int] | None = typer.Option(None, "--fold", help="Only this fold (repeatable; for job schedulers)."),
    model: list[str] | None = typer.Option(None, "--model", help="Only this model id (repeatable)."),
    device: str | None = typer.Option(
        None, "--device", help="Training device: auto | cpu | cuda | cuda:i (sets train.device; torchrun: cuda)."
    ),
) -> None:
    """Cross-validate the configured models: fit, select, predict, metrics, comparisons, plots, report."""
    from survpgc.train.cv import run_cv

    if device is not None:
        overrides = [*(overrides or []), f"train.device={device}"]
    cfg = _cli_config(config, overrides)
    res = run_cv(cfg, out, only_folds=fold or None, only_models=model or None, progress=sys.stderr.isatty())
    _print_summary(res)


config_app = typer.Typer(help="Inspect run configs: the resolved YAML of a config, every key with its help.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show_cmd(
    config: str | None = typer.Argument(None, help="YAML run config (defaults when omitted)."),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. train.epochs=2"),
) -> None:
    """Print the resolved config (file + overrides + defaults, validated) as YAML."""
    import yaml

    cfg = _cli_config(config, overrides)
    typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False), nl=False)


@config_app.command("keys")
def config_keys_cmd() -> None:
    """List every key of a run config (dotted) with its type, default and one line of help."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from survpgc.config import config_keys

    t = Table("key", "type", "default", "help")
    t.columns[0].no_wrap = True
    for k in config_keys():
        t.add_row(*(escape(v) for v in k))
    Console().print(t)


def _print_summary(res) -> None:
    from rich.console import Console
    from rich.table import Table

    from survpgc.report.blocks import mean_sd

    con = Console()
    elsewhere = list(getattr(res, "elsewhere", []) or [])
    if elsewhere:
        con.print(f"{len(elsewhere)} pair(s) are being trained by another process ({', '.join(elsewhere[:5])}); "
                  "it rebuilds the tables when it finishes", markup=False)  # fmt: skip
    if res.summary.empty:
        con.print(f"no finished fold x model pair yet in {res.out_dir}")
        return
    proto = str(res.summary["protocol"].iloc[0])
    t = Table("model", "folds", "test cases", "C-index", "Uno C", "iAUC", "IBS",
              title=f"{res.n_done}/{res.n_total} fold x model pairs")  # fmt: skip
    for _, r in res.summary.iterrows():

        def f(m, r=r):
            return mean_sd(r.get(f"{m}_mean"), r.get(f"{m}_sd"))

        n_cases = r.get("n_cases")
        t.add_row(str(r["model"]), str(r.get("n_folds", "")), "" if n_cases is None else str(n_cases), f("cindex"),
                  f("cindex_uno"), f("iauc"), f("ibs"))  # fmt: skip
    metrics = getattr(res, "metrics", None)
    oracle = None
    if metrics is not None and "oracle_cindex" in metrics.columns:  # a synthetic cohort: its true risk's C-index
        oracle = metrics.drop_duplicates("fold").dropna(subset=["oracle_cindex"])
    if oracle is not None and len(oracle):
        vals = oracle["oracle_cindex"].astype(float)
        t.add_section()
        n_test = str(int(oracle["n_test"].sum())) if "n_test" in oracle else ""
        sd = vals.std(ddof=1) if len(vals) > 1 else None
        t.add_row("oracle (true risk)", str(len(oracle)), n_test, mean_sd(vals.mean(), sd), "-", "-", "-")
    con.print(t)
    if oracle is not None and len(oracle):
        con.print("oracle (true risk): Harrell's C-index of the cohort's true risk (truth.csv) on the same test "
                  "cases; the ceiling a model can reach, not a trained model", markup=False)  # fmt: skip
    untested = list(getattr(res, "untested", []) or [])
    if untested:
        con.print(f"{len(untested)} case(s) never tested (in no test part of the splits), counted in no metric: "
                  f"{', '.join(untested[:10])}{' ...' if len(untested) > 10 else ''}", markup=False)  # fmt: skip
    from survpgc.rundir import RunDir

    if any(" folds; left out " in n for n in RunDir(res.out_dir).read_notes()):
        con.print(f"some means leave folds out (a metric not computable there): see {Path(res.out_dir) / 'notes.txt'}")
    if proto == "paper":
        con.print("[bold red]protocol paper: model selection on the test fold - optimistic numbers[/bold red]")
    if res.report:
        con.print(f"report: {res.report}")
    con.print(f"run directory: {res.out_dir}")


@app.command("segment")
def segment_cmd(
    slides: str = typer.Option(..., "--slides", help="Folder of slides, or a CSV with a 'path' column."),
    out: str = typer.Option(..., "--out", help="Output folder: qc/<slide>.png, masks/<slide>.png, segment.csv."),
    magnification: float = typer.Option(20.0, help="Target magnification of the patch grid (20x = 0.5 um/px)."),
    patch_size: int = typer.Option(256, "--patch-size", help="Patch size in pixels at the target magnification."),
    preset: str = typer.Option("default", help="Tissue segmentation preset: default | biopsy | lenient."),
    min_tissue: float = typer.Option(0.5, "--min-tissue", help="Keep patches with at least this tissue fraction."),
    mpp: float | None = typer.Option(None, help="Microns per pixel for slides whose metadata lacks it."),
    mpp_override: float | None = typer.Option(
        None, "--mpp-override", help="Microns per pixel that REPLACES every slide's metadata (logged per slide)."
    ),
    mpp_table: str | None = typer.Option(None, "--mpp-table", help="CSV slide_id,mpp of per-slide overrides."),
) -> None:
    """Tissue segmentation and patch grid only (fast): QC thumbnails and masks to check before extracting."""
    from survpgc.wsi.extract import segment_slides

    rows = segment_slides(
        slides,
        out,
        magnification=magnification,
        patch_size=patch_size,
        preset=preset,
        min_tissue=min_tissue,
        mpp=mpp,
        mpp_override=mpp_override,
        mpp_table=mpp_table,
    )
    for r in rows:
        typer.echo(
            f"{r['slide_id']}: {r['status']} ({r['n_patches']} patches){'  ' + r['error'] if r['error'] else ''}"
        )
    claimed = [r["slide_id"] for r in rows if r["status"] == "claimed"]
    if claimed:
        typer.echo(f"{len(claimed)} slide(s) claimed by another process on {out} and left to it")
    typer.echo(f"wrote {Path(out) / 'segment.csv'} and QC images in {Path(out) / 'qc'}")
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(1)


@app.command("extract")
def extract_cmd(
    slides: str = typer.Option(..., "--slides", help="Folder of slides, or a CSV with a 'path' column."),
    out: str = typer.Option(
        ..., "--out", help="Output folder: <slide>.h5, qc/<slide>.png, manifest.csv, extraction.json (its settings)."
    ),
    encoder: str = typer.Option("efficientnet_lite0", help="efficientnet_lite0 | uni | conch | timm:<name>."),
    weights: str | None = typer.Option(None, help="Local weights file (UNI / timm / CONCH)."),
    magnification: float = typer.Option(20.0, help="Target magnification (20x = 0.5 um/px)."),
    patch_size: int = typer.Option(256, "--patch-size", help="Patch size in pixels at the target magnification."),
    batch_size: int = typer.Option(64, "--batch-size", help="Patches per encoder batch."),
    workers: int = typer.Option(
        0, help="DataLoader worker processes reading, decoding and transforming patches (started once for all slides)."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:i]."),
    precision: str = typer.Option("auto", help="auto | fp32 | bf16 | fp16."),
    compile_encoder: bool = typer.Option(
        False, "--compile", help="Run the encoder through torch.compile (eager again, with a warning, if it fails)."
    ),
    transform_on: str = typer.Option(
        "auto", "--transform-on", help="Where patches are resized/normalised: auto (GPU on CUDA) | workers | device."
    ),
    reader: str = typer.Option(
        "auto",
        "--reader",
        help="Slide reader: auto (openslide, then tiffslide) | openslide | tiffslide (faster on SVS).",
    ),
    shard: str | None = typer.Option(None, help="i/n: this process's share of the slides (default: torchrun)."),
    mpp: float | None = typer.Option(None, help="Microns per pixel for slides whose metadata lacks it."),
    mpp_override: float | None = typer.Option(
        None, "--mpp-override", help="Microns per pixel that REPLACES every slide's metadata (logged per slide)."
    ),
    mpp_table: str | None = typer.Option(None, "--mpp-table", help="CSV slide_id,mpp of per-slide overrides."),
    preset: str = typer.Option("default", help="Tissue segmentation preset: default | biopsy | lenient."),
    min_tissue: float = typer.Option(0.5, "--min-tissue", help="Keep patches with at least this tissue fraction."),
    float16: bool = typer.Option(False, "--float16", help="Store features as float16 (half the disk)."),
) -> None:
    """Segment tissue, tile at the target magnification and encode patches into CLAM/TRIDENT .h5 files."""
    from survpgc.wsi.extract import extract_features

    res = extract_features(
        slides,
        out,
        encoder=encoder,
        weights=weights,
        magnification=magnification,
        patch_size=patch_size,
        batch_size=batch_size,
        workers=workers,
        device=device,
        precision=precision,
        shard=shard,
        mpp=mpp,
        mpp_override=mpp_override,
        mpp_table=mpp_table,
        preset=preset,
        min_tissue=min_tissue,
        float16=float16,
        progress=sys.stderr.isatty(),
        compile=compile_encoder,
        transform_on=transform_on,
        backend=reader,
    )
    typer.echo(res.describe())
    typer.echo(f"manifest: {res.manifest}")
    if not res.ok:
        failed = [r["slide_id"] for r in res.rows if r["status"] == "failed"]
        typer.secho(f"{res.failed} slide(s) failed: {', '.join(failed[:10])} (see the manifest)", err=True, fg="red")
        raise typer.Exit(1)


store_app = typer.Typer(help="Feature stores: a feature folder in one memory-mapped array, for training at scale.")
app.add_typer(store_app, name="store")


@store_app.command("build")
def store_build_cmd(
    features: str = typer.Option(..., "--features", help="Feature folder (<slide>.h5 / .pt, e.g. from extract)."),
    out: str = typer.Option(..., "--out", help="Store folder: features.npy, coords.npy, slides.csv, store.json."),
    dtype: str = typer.Option("float16", "--dtype", help="float16 (half the disk; as data.cache rounds) | float32."),
) -> None:
    """Build a feature store once (resumable: rerun after an interruption); train with data.store=OUT."""
    from survpgc.data.store import build_store

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{done}/{total} files")
            sys.stderr.flush()

    res = build_store(features, out, dtype=dtype, progress=progress)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    typer.echo(res.describe())
    typer.echo(f"train with: data.store={res.path}")


@store_app.command("info")
def store_info_cmd(store: str = typer.Argument(..., help="Store folder.")) -> None:
    """Print a store's size, dtype, source folder and extraction settings."""
    import json

    from survpgc.data.store import FeatureStore

    st = FeatureStore(store)
    rec = st.record
    typer.echo(f"{st.path}: {len(st.files)} files, {st.n_rows} patches x {st.dim} {st.dtype}")
    typer.echo(f"built {rec.get('created')} from {rec.get('source')}")
    typer.echo(f"settings: {json.dumps(rec.get('settings', {}), sort_keys=True)}")


@app.command("heatmap")
def heatmap_cmd(
    run: str = typer.Option(..., "--run", help="Run directory written by `survpgc run`."),
    case: list[str] = typer.Option(..., "--case", help="Case id (repeatable)."),
    model: str = typer.Option("survpgc", "--model", help="Model id in the run."),
    path: str | None = typer.Option(
        "clinic", "--path", help="clinic | genomic (query tokens of the cross-attention); 'none' for ABMIL-style."
    ),
    fold: int | None = typer.Option(None, "--fold", help="Fold model to use (default: the fold that tested the case)."),
    top_k: int = typer.Option(50, "--top-k", help="Patches in the top-patch montage."),
    slide: str | None = typer.Option(None, "--slide", help="Slide file, when the run's cohort does not locate it."),
    slide_dir: str | None = typer.Option(
        None, "--slide-dir", help="Folder with the slide files (<slide id> or <stem>.<svs|tiff|ndpi|...>)."
    ),
    max_size: int = typer.Option(1024, "--max-size", help="Longest side of the slide thumbnail (px)."),
    outline_top: float = typer.Option(
        0.1, "--outline-top", help="Share of each slide's patches framed as its top scores (0 = none)."
    ),
    masks: str | None = typer.Option(
        None,
        "--masks",
        help="Folder of <slide stem>.png masks of a known region (default: masks/ beside the "
        "cohort when it has one): each slide's localisation AUROC per score is written with its heatmaps.",
    ),
    device: str = typer.Option("cpu", help="cpu | cuda[:i]."),
) -> None:
    """Per-patch score heatmaps (headline score, attention, relevance) on the slide thumbnail + top patches,
    into <run>/interpret/heatmaps."""
    from survpgc.explain.attention import heatmap_for_case
    from survpgc.rundir import RunContext

    ctx = RunContext(run)
    p = None if path in (None, "none") else path
    for i, cid in enumerate(case):
        res = heatmap_for_case(
            run, cid, model_id=model, path=p, fold=fold, top_k=top_k, slide=slide, slide_dir=slide_dir,
            max_size=max_size, outline_top=outline_top, masks_dir=masks,
            device=device, ctx=ctx, refresh_report=i == len(case) - 1,
        )  # fmt: skip
        typer.echo(f"{cid}: fold {res['fold']}, risk {res['risk']:+.3f}, {res['key']} attention")
        for e in res["slides"]:
            auc = e.get("auroc", {})
            where = Path(e[res["headline"]]["figure"]).parent
            loc = ", ".join(f"{k} {v:.2f}" for k, v in auc.items() if v == v)
            loc = f" (AUROC vs mask: {loc})" if loc else ""
            typer.echo(f"  {e['slide_id']}: {e['n_patches']} patches -> {where}{loc}")
    if res.get("report"):
        typer.echo(f"report: {res['report']}")


explain_app = typer.Typer(help="Explain a finished run (modality attributions).")
app.add_typer(explain_app, name="explain")


@explain_app.command("attribution")
def explain_attribution_cmd(
    run: str = typer.Option(..., "--run", help="Run directory written by `survpgc run`."),
    model: str = typer.Option("survpgc", "--model", help="Model id in the run (its head must read fused vectors)."),
    baseline: str = typer.Option(
        "train-mean", help="IG baseline: train-mean (mean fused vector of the fold's training cases) | zero."
    ),
    n_steps: int = typer.Option(64, "--n-steps", help="Integration steps."),
    device: str = typer.Option("cpu", help="cpu | cuda[:i]."),
) -> None:
    """Integrated-gradients shares of each fusion path per test patient (paper Table 3)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from survpgc.explain.attribution import explain_attribution
    from survpgc.report.blocks import mean_sd

    res = explain_attribution(run, model_id=model, baseline=baseline, n_steps=n_steps, device=device)
    summary = res["summary"]
    cols = [c.removesuffix("_mean") for c in summary.columns if c.startswith("path:") and c.endswith("_mean")]
    what = "path"
    if len(cols) == 1:  # one path: its share is 1 by definition, show its vectors instead
        cols = [c.removesuffix("_mean") for c in summary.columns if c.startswith("share:") and c.endswith("_mean")]
        what = "fused vector"
    names = [escape(c.split(":", 1)[1]) for c in cols]  # "genomic[genomic-clinic]" is not rich markup
    t = Table("fold", "patients", *names, title=f"{model}: IG share per {what}")
    for _, r in summary.iterrows():
        t.add_row(str(r["fold"]), str(r["n_patients"]), *[mean_sd(r[c + "_mean"], r[c + "_sd"]) for c in cols])
    Console().print(t)
    typer.echo(f"wrote {res['dir']}")
    if res.get("report"):
        typer.echo(f"report: {res['report']}")


@explain_app.command("localisation")
def explain_localisation_cmd(
    run: str = typer.Option(..., "--run", help="Run directory written by `survpgc run`."),
    masks: str = typer.Option(
        ..., "--masks", help="Folder of <slide stem>.png masks (e.g. a synthetic cohort's masks/)."
    ),
    model: str = typer.Option("survpgc", "--model", help="Model id in the run."),
    downsample: float = typer.Option(16.0, help="Mask size = level-0 size / downsample."),
) -> None:
    """AUROC of every per-patch score against known masks, per test case (synthetic ground truth)."""
    from survpgc.explain.attention import localisation_table
    from survpgc.report.blocks import mean_sd

    table = localisation_table(run, masks, model_id=model, downsample=downsample)
    cols = [c for c in table.columns if c.startswith("auroc_")]
    for key, g in table.groupby("path"):
        each = ", ".join(f"{c.removeprefix('auroc_')} {mean_sd(g[c].mean(), g[c].std())}" for c in cols)
        typer.echo(f"{key}: AUROC {each} (mean ± sd over {g[cols[0]].notna().sum()} slides with both classes)")


study_app = typer.Typer(help="Studies: the paper's (template diversity, clinical integration); the truth study.")
app.add_typer(study_app, name="study")


@study_app.command("templates")
def study_templates_cmd(
    cohort: str = typer.Option(..., "--cohort", help="Built-in name (tcga-lihc) or a TCGA-layout folder."),
    out: str = typer.Option("runs/templates", "--out", help="Study directory."),
    n_templates: str = typer.Option("1,3,5,10,20", "--n-templates", help="Comma-separated N_t values."),
    encoder: str = typer.Option("minilm", help="Text encoder (survpgc text-encoders)."),
    templates: str | None = typer.Option(None, help="Template set (default: survpgc's; survpgc-paper; a CSV)."),
    seed: int = typer.Option(0, help="Template draw and t-SNE seed."),
    overrides: list[str] | None = typer.Argument(None, help="Run-config key=value settings, e.g. train.epochs=20"),
) -> None:
    """t-SNE of clinical embeddings by survival group and mlp C-index for each N_t (paper Fig. 5, Table 5)."""
    from rich.console import Console
    from rich.table import Table

    from survpgc.report.blocks import mean_sd
    from survpgc.studies import template_study

    try:
        nts = [int(v) for v in n_templates.split(",") if v.strip()]
    except ValueError as exc:
        from survpgc.errors import InputError

        raise InputError(f"--n-templates must be comma-separated integers, got {n_templates!r}") from exc
    from survpgc.locks import output_dir

    with output_dir(out):
        res = template_study(cohort, out, n_templates=nts, encoder=encoder, templates=templates,
                             overrides=list(overrides or []), seed=seed)  # fmt: skip
    t = Table("N_t", "distinct sentences", "silhouette", "C-index (mlp)", "paper (LIHC)", title="template diversity")
    for _, r in res["table"].iterrows():
        paper = r["paper_lihc"]
        t.add_row(
            str(r["n_templates"]),
            str(r["distinct_sentences"]),
            f"{r['silhouette_survival_groups']:+.3f}",
            mean_sd(r["cindex_mean"], r["cindex_sd"]),
            f"{paper:.3f}" if paper == paper else "-",
        )
    Console().print(t)
    typer.echo(f"t-SNE: {res['tsne']}")
    typer.echo(f"report: {res['report']}")


@study_app.command("clinical-integration")
def study_integration_cmd(
    config: str | None = typer.Option(None, "--config", help="YAML run config (cohort, pathology, clinical...)."),
    out: str = typer.Option("runs/clinical-integration", "--out", help="Run directory."),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. train.epochs=2"),
) -> None:
    """Late / concatenation / encoded fusion (paper Table 4 a, b, c) vs survpc on the same folds."""
    from survpgc.locks import output_dir
    from survpgc.studies import clinical_integration_study

    with output_dir(out):
        res = clinical_integration_study(config, out, overrides=list(overrides or []), progress=sys.stderr.isatty())
    _print_summary(res)


@study_app.command("truth")
def study_truth_cmd(
    out: str = typer.Option("runs/truth", "--out", help="Study folder (a rerun resumes it)."),
    seeds: int = typer.Option(5, "--seeds", help="Number of seeds, drawn at run time (never a development seed)."),
    seed_list: str | None = typer.Option(None, "--seed-list", help="Exact seeds, comma-separated (re-create a study)."),
    n_patients: int = typer.Option(110, "--n-patients", help="Patients per synthetic cohort."),
    models: str | None = typer.Option(
        None, "--models", help="Models, ';'-separated: names, name:modality shorthands or YAML items (default: "
        "survpgc; abmil; coxph; snn:genomic; mlp:clinical)."
    ),
    synth: list[str] | None = typer.Option(
        None, "--synth", help="Generator setting key=value (repeatable), e.g. censoring=[0.3,0.5] or "
        "slide_size=[2048,2048]; see `survpgc synth --help`."
    ),
    permute: bool = typer.Option(
        True, "--permute/--no-permute", help="Also train SurvPGC with the clinical or the genomic modality "
        "permuted (do the IG shares follow the signal?)."
    ),
    ig_steps: int = typer.Option(32, "--ig-steps", help="Integrated-gradients steps."),
    localise: bool = typer.Option(
        True, "--localise/--no-localise", help="Score every test patch and measure localisation of the planted "
        "texture (off: C-index and IG shares only)."
    ),
    data_from: str | None = typer.Option(
        None, "--data-from", help="Reuse another study's cohorts and features (same seeds and generator "
        "settings), e.g. to compare two recipes on the same cohorts."
    ),
    overrides: list[str] | None = typer.Argument(None, help="Run-config key=value settings (the recipe)."),
) -> None:  # fmt: skip
    """Multi-seed truth study: C-index vs the oracle, localisation per patch score, IG shares (mean ± sd)."""
    from rich.console import Console
    from rich.table import Table

    from survpgc.errors import InputError
    from survpgc.studies.truth import DEFAULT_MODELS, parse_synth_settings, truth_study

    try:
        chosen: int | list[int] = [int(v) for v in seed_list.split(",") if v.strip()] if seed_list else seeds
    except ValueError as exc:
        raise InputError(f"--seed-list must be comma-separated integers, got {seed_list!r}") from exc
    items = [m.strip() for m in models.split(";") if m.strip()] if models else list(DEFAULT_MODELS)
    res = truth_study(out, seeds=chosen, n_patients=n_patients, models=items, overrides=list(overrides or []),
                      synth=parse_synth_settings(synth or []), permute=permute, ig_steps=ig_steps,
                      data_from=data_from, localise=localise)  # fmt: skip
    t = Table("table", "model", "measure", "mean ± sd", "seeds", title="truth study (mean ± sd over seeds)")
    for _, r in res["summary"].iterrows():
        sd = f" ± {r['sd']:.3f}" if r["sd"] == r["sd"] else ""
        t.add_row(r["table"], r["model"], r["what"], f"{r['mean']:.3f}{sd}", str(r["n_seeds"]))
    Console().print(t)
    typer.echo(f"tables: {Path(out) / 'summary.md'}")


@app.command("train")
def train_cmd(
    config: str | None = typer.Argument(None, help="YAML run config (default: the --from-run run's config)."),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. data.n_bins=4"),
    out: str = typer.Option(..., "--out", help="Bundle folder to write (new or empty)."),
    from_run: str | None = typer.Option(None, "--from-run", help="Finished CV run: epochs = median selected epoch."),
    epochs: int | None = typer.Option(None, "--epochs", help="Train this many epochs (instead of --from-run's)."),
    model: str | None = typer.Option(None, "--model", help="Model id of the config (default: the first)."),
    ensemble: bool = typer.Option(False, "--ensemble", help="Bundle --from-run's fold models instead of a refit."),
    device: str | None = typer.Option(None, "--device", help="Torch device (default: the config's train.device)."),
) -> None:
    """Fit one model on all cases (or bundle a run's fold models) and write a model bundle."""
    from survpgc.deploy.fit import train_bundle

    cfg = _cli_config(config, overrides) if config is not None or overrides else None
    res = train_bundle(cfg, out, model_id=model, from_run=from_run, epochs=epochs, ensemble=ensemble, device=device)
    tr = res.manifest["training"]
    typer.echo(f"bundle: {res.path} ({res.manifest['kind']}, model {res.manifest['model']['id']}, epochs "
               f"{tr.get('epochs')}; risk cutoff {res.manifest['risk_cutoff']:.4g})")  # fmt: skip


@app.command("predict")
def predict_cmd(
    model: str = typer.Option(..., "--model", help="Model bundle (the --out of `survpgc train`)."),
    cohort: str = typer.Option(..., "--cohort", help="Built-in cohort or TCGA-layout folder (survival optional)."),
    out: str = typer.Option(..., "--out", help="Output folder: predictions.csv, predict.html."),
    feature_dir: str | None = typer.Option(None, "--feature-dir", help="Folder of <slide stem>.h5 patch features."),
    clinical_tokens: str | None = typer.Option(
        None, "--clinical-tokens", help="Tokens of `survpgc encode-clinical` (default: encoded with the bundle's)."
    ),
    device: str = typer.Option("cpu", "--device", help="Torch device."),
    allow_other_population: bool = typer.Option(
        False, "--allow-other-population", help="Predict a cohort of other tumour subtypes than the training one."
    ),
    heatmaps: bool = typer.Option(False, "--heatmaps", help="Attention/relevance heatmaps per case, linked."),
    slide_dir: str | None = typer.Option(None, "--slide-dir", help="Folder of slide files for the heatmaps."),
    max_heatmaps: int | None = typer.Option(None, "--max-heatmaps", help="Heatmaps of the first N cases only."),
) -> None:
    """Predict new patients with a bundle: risk, survival curve, S(1/3/5 y), risk group, modalities present."""
    from survpgc.deploy.predict import predict_to_dir

    res = predict_to_dir(
        model,
        cohort,
        out,
        feature_dir=feature_dir,
        clinical_tokens=clinical_tokens,
        device=device,
        allow_other_population=allow_other_population,
        heatmaps=heatmaps,
        slide_dir=slide_dir,
        max_heatmaps=max_heatmaps,
    )
    groups = res.predictions["risk_group"].value_counts().to_dict()
    typer.echo(f"{len(res.predictions)} patient(s) predicted ({groups}): {res.csv}, {res.html}")


@app.command("validate")
def validate_cmd(
    model: list[str] = typer.Option(..., "--model", help="Model bundle; repeat to compare (first = reference)."),
    cohort: str = typer.Option(..., "--cohort", help="Built-in cohort or TCGA-layout folder, with survival data."),
    out: str = typer.Option(..., "--out", help="Output folder: CSV tables, plots, report.html."),
    times: str = typer.Option("12,36,60", "--times", help="Comma-separated months for AUC and calibration."),
    n_bootstrap: int = typer.Option(1000, "--n-bootstrap", help="Bootstrap resamples for CIs, comparisons (0 = none)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    feature_dir: str | None = typer.Option(None, "--feature-dir", help="Folder of <slide stem>.h5 patch features."),
    clinical_tokens: str | None = typer.Option(
        None, "--clinical-tokens", help="Tokens of `survpgc encode-clinical` (default: encoded with the bundle's)."
    ),
    time_unit: str = typer.Option("months", "--time-unit", help=_TIME_UNIT_HELP),
    device: str = typer.Option("cpu", "--device", help="Torch device."),
) -> None:
    """External validation of bundles: C-indices with CIs, td-AUC, IBS, KM by the training cutoff, calibration."""
    from rich.console import Console
    from rich.table import Table

    from survpgc.deploy.validate import validate_to_dir
    from survpgc.errors import InputError
    from survpgc.report.blocks import num
    from survpgc.report.plots import format_p_value

    try:
        grid = [float(x) for x in times.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--times must be comma-separated months, got {times!r}") from None
    units = ("days", "weeks", "months", "years")
    if time_unit not in units:
        raise InputError(f"--time-unit must be one of {', '.join(units)}; got {time_unit!r}")
    res = validate_to_dir(model, cohort, out, times=grid, n_bootstrap=n_bootstrap, seed=seed, feature_dir=feature_dir,
                          device=device, clinical_tokens=clinical_tokens, time_unit=time_unit)  # fmt: skip
    t = Table("model", "cases", "C-index [95% CI]", "Uno C [95% CI]", "iAUC", "IBS", "log-rank p", "D-cal p",
              title=f"external validation on {res.bundles[0].metrics.get('n_cases')} cases")  # fmt: skip
    apparent = []
    for _, r in res.metrics.iterrows():

        def ci(k, r=r):
            return f"{num(r[k])} [{num(r[k + '_low'])}, {num(r[k + '_high'])}]"

        label = r.get("apparent_label")
        label = label if isinstance(label, str) and label else "apparent (training cohort)"
        name = f"{r['model']} (apparent)" if bool(r["apparent"]) else str(r["model"])
        if bool(r["apparent"]):
            apparent.append(f"{r['model']}: {label} (optimistic; see the report)")
        t.add_row(name, num(r["n_cases"]), ci("cindex"), ci("cindex_uno"), num(r["iauc"]), num(r["ibs"]),
                  format_p_value(r["logrank_p"]), format_p_value(r["dcal_p"]))  # fmt: skip
    if "oracle_cindex" in res.metrics.columns:
        r0 = res.metrics.iloc[0]
        oracle = f"{num(r0['oracle_cindex'])} [{num(r0['oracle_cindex_low'])}, {num(r0['oracle_cindex_high'])}]"
        t.add_row("oracle (true risk)", num(r0["n_cases"]), oracle, "", "", "", "", "")
    con = Console()
    con.print(t)
    for line in apparent:
        con.print(line, markup=False)
    for _, r in res.comparisons.iterrows():
        ci = f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        p = format_p_value(r["p_value"])
        con.print(f"{r['model']} vs {r['reference']}: ΔC {r['delta_cindex']:+.3f} {ci}, p {p}", markup=False)
    con.print(f"report: {res.report}", markup=False)


@app.command("demo")
def demo_cmd(
    out: str = typer.Option("runs/demo", "--out", help="Folder for the demo's cohorts, features and runs."),
    n_patients: int = typer.Option(40, "--n-patients", help="Patients of the synthetic cohort."),
    quick: bool = typer.Option(False, help="A much smaller run (smoke test)."),
) -> None:
    """The whole pipeline on shipped data: (a) synthetic tri-modal cohort with known truth, (b) TCGA-LIHC."""
    from survpgc.demo import run_demo
    from survpgc.locks import output_dir

    with output_dir(out):
        run_demo(out, n_patients=n_patients, quick=quick)


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: what went wrong and the path(s) it concerns."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return f"{reason}"
    return f"{reason}: {' -> '.join(paths)}"


def main() -> None:
    """Entry point of the ``survpgc`` console script.

    Exit codes: 0 done; 1 finished with failed items (e.g. slides that could not be read; see the manifest);
    2 refused or failed (our own errors and operating-system errors, as one line naming the file, row, key or
    path); 130 interrupted by Ctrl-C (what was finished is kept; rerunning the same command resumes).
    """
    from survpgc.errors import Interrupted, SurvpgcError

    try:
        app()
    except SurvpgcError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except OSError as exc:
        typer.secho(f"error: {os_error_line(exc)}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as exc:
        # typer turns Ctrl-C into a silent SystemExit(130); find the interrupt behind it and say what it means
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        if isinstance(cause, Interrupted):
            message = str(cause)
        else:
            message = "finished outputs are kept and nothing is half-written; rerun the same command to resume"
        typer.secho(f"interrupted: {message}", err=True, fg=typer.colors.YELLOW)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
