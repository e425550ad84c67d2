"""Command-line interface: thin typer glue over library functions.

Only typer is imported at module level; every command imports what it needs inside its body so that
``survpgc --help`` stays instant.
"""

from __future__ import annotations

import logging
import sys

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


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("survpgc").setLevel(logging.DEBUG if verbose else logging.INFO)


@app.command()
def version() -> None:
    """Print the survpgc version."""
    from survpgc import __version__

    typer.echo(__version__)


cohort_app = typer.Typer(help="Inspect cohorts (built-in names such as tcga-lihc, or TCGA-layout folders).")
app.add_typer(cohort_app, name="cohort")


def _open(source: str, endpoint: str, feature_dir: str | None, on_invalid: str):
    from survpgc.data.cohort import open_cohort

    return open_cohort(source, endpoint=endpoint, feature_dir=feature_dir, on_invalid_survival=on_invalid)


@cohort_app.command("info")
def cohort_info(
    source: str = typer.Argument(..., help="Built-in name (tcga-lihc) or a folder with cohort.csv [+ omics.csv.gz]."),
    endpoint: str = typer.Option("os", help="os | dss | pfs"),
    feature_dir: str | None = typer.Option(None, help="Folder of <slide stem>.h5 / .pt feature files."),
    on_invalid: str = typer.Option("error", help="Invalid survival rows: error | drop."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Cases, events, censoring, follow-up and modality coverage of a cohort."""
    import json

    from rich.console import Console
    from rich.table import Table

    cohort = _open(source, endpoint, feature_dir, on_invalid)
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
) -> None:
    """Stratified (event × time) patient-level K-fold splits with a validation part per fold."""
    from survpgc.data.splits import make_splits

    cohort = _open(source, endpoint, None, on_invalid)
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


@app.command()
def synth(
    out: str = typer.Option(..., "--out", help="Folder to create (TCGA layout + slides/, masks/, truth.*)."),
    n_patients: int = typer.Option(40, "--n-patients", help="Number of patients."),
    seed: int = typer.Option(0, help="Same seed, byte-identical files."),
    width: int = typer.Option(3072, help="Level-0 slide width in pixels."),
    height: int = typer.Option(2048, help="Level-0 slide height in pixels."),
    no_slides: bool = typer.Option(False, "--no-slides", help="Write tables and masks only (fast)."),
    overwrite: bool = typer.Option(False, help="Replace a non-empty --out folder."),
) -> None:
    """Write a synthetic tri-modal cohort with known ground truth (slides, clinical, omics, survival)."""
    from survpgc.data.synth import generate_synthetic_cohort

    res = generate_synthetic_cohort(
        out,
        n_patients=n_patients,
        seed=seed,
        slide_size=(width, height),
        render_slides=not no_slides,
        overwrite=overwrite,
    )
    typer.echo(
        f"wrote {res.n_patients} patients to {res.out_dir} in {res.seconds:.1f} s: "
        f"censoring {res.censoring_rate:.0%}, C-index of the true risk {res.cindex_true:.3f} (oracle ceiling)"
    )


def main() -> None:
    """Entry point of the ``survpgc`` console script; turns SurvpgcError into a one-line message."""
    from survpgc.errors import SurvpgcError

    try:
        app()
    except SurvpgcError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
