"""The multi-seed study on synthetic cohorts with planted truth (``survpgc study truth``).

A single synthetic seed says little: localisation AUROCs and C-indices move by 0.05-0.1 between seeds.  This
study draws its seeds at run time (never one of :data:`DEVELOPMENT_SEEDS`, the seeds used while the scores and
the recipe were developed) and, for each seed:

1. writes a synthetic cohort (:func:`survpgc.synth.generate_synthetic_cohort`, slides included) and extracts
   patch features with the offline encoder;
2. cross-validates the models on it (``survpgc run`` with the config's recipe), with the oracle -- the
   C-index of the true risk on the same test folds -- beside them;
3. scores every patch of every test slide of every model that attends to patches, with every per-patch score
   the toolkit has (:func:`survpgc.explain.attention.localisation_table`), and measures how well each score
   finds the planted texture (AUROC per slide against the mask, averaged over slides);
4. computes SurvPGC's integrated-gradients shares of its two paths on the intact cohort and, with
   ``permute`` on, on two copies where the clinical records or the omics rows are permuted across patients
   (the modality keeps its distribution and loses its link to survival): a share that follows the signal
   drops for the permuted modality's path.

Then every figure is summarised as mean ± sd over seeds (``summary.md``, ``summary.csv``).  Per-seed
folders keep the cohort, the features and the run directories, so any number can be reopened; a rerun of
the same command resumes (finished cohorts, features and folds are kept).
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.errors import ConfigError, InputError
from survpgc.files import atomic_write, atomic_write_text

__all__ = [
    "DEFAULT_MODELS",
    "DEVELOPMENT_SEEDS",
    "cross_validate",
    "derived_cohort",
    "draw_seeds",
    "model_entry",
    "parse_synth_settings",
    "summarise_study",
    "truth_study",
]

log = logging.getLogger(__name__)

#: Seeds of synthetic cohorts used while developing the patch scores, the recipe and the tests; the study never
#: draws them, so its figures come from cohorts nobody tuned on.
DEVELOPMENT_SEEDS = frozenset(
    {0, 1, 2, 3, 7, 11, 12, 13, 21, 22, 23, 31, 32, 33, 42, 101, 202, 303, *range(4000, 4010)}
)

#: Models of the study: SurvPGC, a pathology-only attention MIL, and one baseline per other modality.
DEFAULT_MODELS = (
    "survpgc",
    "abmil",
    "coxph",
    "{name: snn, params: {modality: genomic}}",
    "{name: mlp, params: {modality: clinical}}",
)

SEED_RANGE = (1_000, 2**31 - 1)
_SHORTHAND = re.compile(r"([A-Za-z_][\w]*):([A-Za-z_]+)")


def model_entry(item: str) -> str:
    """A ``models`` entry of the study: a YAML flow item as in ``models=[...]``, or the shorthand
    ``name:modality`` of a run's model id (``snn:genomic`` -> ``{name: snn, params: {modality: genomic}}``)."""
    item = item.strip()
    m = _SHORTHAND.fullmatch(item)
    return f"{{name: {m.group(1)}, params: {{modality: {m.group(2)}}}}}" if m else item


PERMUTED = ("clinical", "genomic")
CLINICAL_COLUMNS = ("age", "sex", "race", "stage", "stage_edition", "subtype")


def draw_seeds(n: int, *, exclude: Sequence[int] = ()) -> list[int]:
    """``n`` distinct seeds drawn from the operating system's entropy, none of them a development seed."""
    if n < 1:
        raise InputError(f"--seeds must be >= 1, got {n}")
    banned = set(DEVELOPMENT_SEEDS) | {int(s) for s in exclude}
    seeds: list[int] = []
    while len(seeds) < n:
        s = SEED_RANGE[0] + secrets.randbelow(SEED_RANGE[1] - SEED_RANGE[0])
        if s not in banned and s not in seeds:
            seeds.append(s)
    return seeds


#: Arguments of the generator that the study sets itself.
_OWN_SYNTH_ARGS = frozenset({"out_dir", "n_patients", "seed", "overwrite", "render_slides"})


def parse_synth_settings(items: Sequence[str]) -> dict[str, Any]:
    """``["censoring=0.7", "slide_size=[2048, 2048]"]`` -> keyword arguments of the generator (values read as
    YAML; lists become tuples). Unknown keys are refused with the list of known ones."""
    import inspect

    import yaml

    from survpgc.synth import generate_synthetic_cohort

    known = [p for p in inspect.signature(generate_synthetic_cohort).parameters if p not in _OWN_SYNTH_ARGS]
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"--synth expects key=value, got {item!r}")
        if key not in known:
            raise InputError(f"--synth {key!r} is not a generator setting; known: {', '.join(known)}")
        value = yaml.safe_load(raw)
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _check_seeds(seeds: Sequence[int], *, allow_development: bool = False) -> list[int]:
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"--seed-list repeats a seed: {seeds}")
    dev = sorted(set(seeds) & DEVELOPMENT_SEEDS)
    if dev and not allow_development:
        raise InputError(
            f"seed(s) {dev} were used while developing the scores and the recipe (DEVELOPMENT_SEEDS); "
            "a result on them is not a result on an unseen cohort: choose other seeds or let --seeds draw them"
        )
    if any(s < 0 for s in seeds):
        raise InputError(f"seeds must be non-negative integers, got {seeds}")
    return seeds


def _study_record(out: Path, settings: dict[str, Any], *, explicit: bool) -> dict[str, Any]:
    """Write ``study.json`` (seeds and settings) or, on a rerun, check the settings and return the recorded
    (drawn seeds are kept from the first run; explicit seeds must match)."""
    path = out / "study.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if explicit and old.get("seeds") != settings["seeds"]:
            raise ConfigError(
                f"{path} records seeds {old.get('seeds')}, not {settings['seeds']}; write to another --out folder"
            )
        same = {k: v for k, v in old.items() if k != "seeds"} == {k: v for k, v in settings.items() if k != "seeds"}
        if not same:
            diff = sorted(k for k in set(old) | set(settings) if k != "seeds" and old.get(k) != settings.get(k))
            raise ConfigError(
                f"{path} records another study (differs in {', '.join(diff)}); write to another --out folder "
                "or rerun with the recorded settings"
            )
        return old
    atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return settings


def truth_study(
    out: str | Path,
    *,
    seeds: int | Sequence[int] = 5,
    n_patients: int = 110,
    models: Sequence[str] = DEFAULT_MODELS,
    overrides: Sequence[str] = (),
    synth: Mapping[str, Any] | None = None,
    permute: bool = True,
    ig_steps: int = 32,
    encoder: str = "efficientnet_lite0",
    device: str = "cpu",
    data_from: str | Path | None = None,
    localise: bool = True,
    allow_development_seeds: bool = False,
) -> dict[str, pd.DataFrame]:
    """Run the study (see the module docstring) into ``out``; returns its tables.

    Args:
        seeds: how many seeds to draw at run time, or the exact seeds (to re-create a recorded study).
        n_patients: patients per synthetic cohort.
        models: the run's ``models`` entries (YAML flow items, as in ``models=[...]``, or ``name:modality``
            shorthands such as ``snn:genomic``; see :func:`model_entry`).
        overrides: more ``key=value`` config overrides (the recipe; the default is the config's default).
        synth: keyword arguments of :func:`~survpgc.synth.generate_synthetic_cohort` (censoring, slide size,
            planted fraction, signal, noise ...); recorded.
        permute: also train SurvPGC on cohorts with the clinical or the genomic modality permuted, for the IG
            check.
        ig_steps: integrated-gradients steps.
        allow_development_seeds: accept seeds of :data:`DEVELOPMENT_SEEDS` (the suite's reduced study; recorded,
            and ``summary.md`` then says that its seeds are development seeds).
        localise: score the patches of every test slide and measure localisation (off: C-index and IG only).
        data_from: another study folder whose cohorts and features (same seeds and generator settings) are
            used instead of making new ones -- e.g. to compare two recipes on the very same cohorts.
    """
    from survpgc import __version__
    from survpgc.locks import output_dir

    out = Path(out)
    if isinstance(seeds, int):
        chosen = draw_seeds(seeds)
    else:
        chosen = _check_seeds(seeds, allow_development=allow_development_seeds)
    settings = {
        "seeds": chosen,
        "n_patients": int(n_patients),
        "models": [model_entry(m) for m in models],
        "overrides": list(overrides),
        "synth": json.loads(json.dumps(dict(synth or {}))),  # as recorded: tuples become lists
        "permute": bool(permute),
        "localise": bool(localise),
        "ig_steps": int(ig_steps),
        "encoder": encoder,
        "survpgc_version": __version__,
        "data_from": str(Path(data_from).resolve()) if data_from else None,
    }
    with output_dir(out):
        record = _study_record(out, settings, explicit=not isinstance(seeds, int))
    chosen = record["seeds"]
    log.info("truth study: seeds %s (drawn at run time unless given)", chosen)
    for seed in chosen:
        _one_seed(out / f"seed{seed}", seed, record, device=device)
    return summarise_study(out)


def _one_seed(folder: Path, seed: int, rec: dict[str, Any], *, device: str) -> None:
    from survpgc.explain.attribution import explain_attribution
    from survpgc.synth import generate_synthetic_cohort
    from survpgc.wsi.extract import extract_features

    data = Path(rec["data_from"]) / folder.name if rec.get("data_from") else folder
    cohort, feats = data / "cohort", data / "features"
    if rec.get("data_from"):
        _check_shared_data(Path(rec["data_from"]), rec, cohort)
    elif not (cohort / "truth.json").is_file():
        generate_synthetic_cohort(cohort, n_patients=rec["n_patients"], seed=seed, overwrite=True, **rec["synth"])
    if not rec.get("data_from"):
        extract_features(cohort / "slides", feats, encoder=rec["encoder"], device=device)
    run = folder / "run"
    cross_validate(run, cohort, feats, rec["models"], rec["overrides"])
    models = _models_of(run)
    tables = []
    for model_id in models if rec.get("localise", True) else []:
        t = _localisation(run, cohort / "masks", model_id, device)
        if t is not None:
            tables.append(t.assign(model=model_id))
    loc = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    atomic_write(folder / "localisation.csv", lambda t: loc.to_csv(t, index=False))
    if "survpgc" not in models:
        return
    shares = [_shares(explain_attribution(run, n_steps=rec["ig_steps"], refresh_report=False), "intact")]
    if rec["permute"]:
        for modality in PERMUTED:
            copy = folder / f"cohort_permuted_{modality}"
            _permuted_copy(cohort, copy, modality, seed)
            prun = folder / f"run_permuted_{modality}"
            cross_validate(prun, copy, feats, ["survpgc"], rec["overrides"])
            ig = explain_attribution(prun, n_steps=rec["ig_steps"], refresh_report=False)
            shares.append(_shares(ig, f"{modality} permuted"))
    table = pd.concat(shares, ignore_index=True)
    atomic_write(folder / "ig_shares.csv", lambda t: table.to_csv(t, index=False))


def _check_shared_data(other: Path, rec: dict[str, Any], cohort: Path) -> None:
    """The other study made its cohorts with the same generator settings, and this seed's cohort is finished."""
    theirs = json.loads((other / "study.json").read_text())
    for key in ("n_patients", "synth", "encoder"):
        if theirs.get(key) != rec.get(key):
            raise ConfigError(
                f"--data-from {other}: its {key} is {theirs.get(key)!r}, this study's is {rec.get(key)!r}"
            )
    if not (cohort / "truth.json").is_file():
        raise InputError(f"--data-from {other}: no finished cohort {cohort} (run that study first)")


def cross_validate(run: Path, cohort: Path, feats: Path, models: Sequence[str], overrides: Sequence[str] = ()):
    """One ``run_cv`` of ``models`` on a study cohort with the study's inputs (pathway tokens of the hallmark
    signatures) and the recipe ``overrides``; resumable like any run."""
    from survpgc.config import load_config
    from survpgc.train.cv import run_cv

    cfg = load_config(
        None,
        [
            f"cohort.source={cohort}",
            f"pathology.feature_dir={feats}",
            "genomic.kind=pathways",
            "genomic.signatures=hallmarks",
            f"models=[{', '.join(models)}]",
            *overrides,
        ],
    )
    return run_cv(cfg, run)


def _models_of(run: Path) -> list[str]:
    from survpgc.rundir import RunDir

    return [m.id for m in RunDir(run).read_config().models]


def _localisation(run: Path, masks: Path, model_id: str, device: str) -> pd.DataFrame | None:
    """Per-slide localisation AUROCs of every score, or None for a model without attention over patches."""
    from survpgc.explain.attention import localisation_table
    from survpgc.inputs import model_modalities
    from survpgc.rundir import RunContext

    ctx = RunContext(run)
    if "pathology" not in model_modalities(ctx.entry(model_id))[0]:
        return None
    try:
        return localisation_table(run, masks, model_id=model_id, device=device, ctx=ctx)
    except ConfigError as e:  # a pathology model without attention weights (mean_mil, ...)
        log.info("truth study: no localisation for %s: %s", model_id, e)
        return None


def _shares(ig: dict[str, Any], condition: str) -> pd.DataFrame:
    p = ig["patients"]
    cols = [c for c in p.columns if c.startswith("path:")]
    return p[["case_id", "fold", *cols]].assign(condition=condition)


def derived_cohort(cohort: Path, copy: Path, edit: Callable[[Path], None]) -> None:
    """A copy of ``cohort``'s tables (cohort, omics, truth; slides and features stay where they are) changed by
    ``edit(folder)``, written whole under a temporary name and renamed into place; nothing when ``copy`` exists."""
    if (copy / "cohort.csv").is_file():
        return
    tmp = copy.with_name(f".{copy.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("cohort.csv", "omics.csv.gz", "truth.csv", "truth.json"):
        shutil.copy2(cohort / name, tmp / name)
    edit(tmp)
    tmp.rename(copy)


def _permuted_copy(cohort: Path, copy: Path, modality: str, seed: int) -> None:
    """The cohort's tables with one modality permuted across patients (survival, slides and truth unchanged)."""
    rng = np.random.default_rng([seed, PERMUTED.index(modality)])

    def permute(folder: Path) -> None:
        if modality == "clinical":
            df = pd.read_csv(folder / "cohort.csv", keep_default_na=False)
            order = rng.permutation(len(df))
            for c in CLINICAL_COLUMNS:
                df[c] = df[c].to_numpy()[order]
            df.to_csv(folder / "cohort.csv", index=False)
        else:
            df = pd.read_csv(folder / "omics.csv.gz")
            df["case_id"] = df["case_id"].to_numpy()[rng.permutation(len(df))]
            df.to_csv(folder / "omics.csv.gz", index=False)

    derived_cohort(cohort, copy, permute)


# ============================================================================ summary over seeds
def _mean_sd(values: pd.Series) -> tuple[float, float, int]:
    v = values.dropna().to_numpy(float)
    if not len(v):
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


def _fmt(mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.3f}" if not math.isfinite(sd) else f"{mean:.3f} ± {sd:.3f}"


def summarise_study(out: str | Path) -> dict[str, pd.DataFrame]:
    """Read every finished seed of a study folder and write ``summary.csv`` and ``summary.md`` (mean ± sd over
    seeds of each model's C-index and the oracle, the per-seed difference of :data:`REFERENCE_MODEL` to each
    other model and to the oracle, each score's localisation AUROC, the IG shares)."""
    out = Path(out)
    record = json.loads((out / "study.json").read_text())
    cidx, loc, ig = [], [], []
    for seed in record["seeds"]:
        folder = out / f"seed{seed}"
        if not (folder / "localisation.csv").is_file():
            continue
        cidx.append(_seed_cindex(folder / "run").assign(seed=seed))
        t = _read_table(folder / "localisation.csv")
        if not t.empty:
            loc.append(_localisation_by_score(t).assign(seed=seed))
        if (folder / "ig_shares.csv").is_file():
            s = _read_table(folder / "ig_shares.csv")
            if s.empty:
                continue
            cols = [c for c in s.columns if c.startswith("path:")]
            ig.append(s.groupby("condition")[cols].mean().reset_index().assign(seed=seed))
    tables = {
        "cindex": pd.concat(cidx, ignore_index=True) if cidx else pd.DataFrame(),
        "localisation": pd.concat(loc, ignore_index=True) if loc else pd.DataFrame(),
        "ig_shares": pd.concat(ig, ignore_index=True) if ig else pd.DataFrame(),
    }
    for name, table in tables.items():
        atomic_write(out / f"{name}.csv", lambda t, tb=table: tb.to_csv(t, index=False))
    rows = _summary_rows(tables)
    summary = pd.DataFrame(rows)
    atomic_write(out / "summary.csv", lambda t: summary.to_csv(t, index=False))
    atomic_write_text(out / "summary.md", _markdown(record, tables, summary))
    tables["summary"] = summary
    return tables


def _read_table(path: Path) -> pd.DataFrame:
    """A seed's table; an empty one (``--no-localise`` writes a localisation table without rows or columns) is an
    empty frame."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _localisation_by_score(t: pd.DataFrame) -> pd.DataFrame:
    """Per model, path and score: the mean per-slide AUROC. Scores of the whole bag (the same for every path:
    gradient x input, IG, occlusion) are kept once, with the path ``whole bag``."""
    from survpgc.explain.scores import CASE_SCORES

    scores = [c for c in t.columns if c.startswith("auroc_")]
    per = t.groupby(["model", "path"], sort=False)[scores].mean().reset_index()
    long = per.melt(["model", "path"], var_name="score", value_name="auroc")
    case = long["score"].str.removeprefix("auroc_").isin(CASE_SCORES)
    bag = long[case].drop_duplicates(["model", "score"]).assign(path="whole bag")
    return pd.concat([long[~case], bag], ignore_index=True)


def _seed_cindex(run: Path) -> pd.DataFrame:
    """Each model's mean test C-index over folds and, as the last row, the oracle's on the same folds (the run's
    ``oracle_cindex_mean``, Harrell's C of the true risk)."""
    from survpgc.rundir import RunDir

    summary = RunDir(run).read_table("summary")
    if "oracle_cindex_mean" not in summary.columns:
        raise ConfigError(f"run {run} has no oracle (its cohort has no truth.csv); the truth study needs one")
    rows = [{"model": r["model"], "cindex": float(r["cindex_mean"])} for _, r in summary.iterrows()]
    rows.append({"model": "oracle (true risk)", "cindex": float(summary["oracle_cindex_mean"].iloc[0])})
    return pd.DataFrame(rows)


#: The model every other model (and the oracle) is compared with, seed by seed, in the summary's paired table.
REFERENCE_MODEL = "survpgc"


def _summary_rows(tables: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    c = tables["cindex"]
    for model, g in c.groupby("model", sort=False) if not c.empty else []:
        m, s, n = _mean_sd(g["cindex"])
        rows.append(
            {"table": "cindex", "model": model, "what": "C-index (test folds)", "mean": m, "sd": s, "n_seeds": n}
        )
    if not c.empty and (c["model"] == REFERENCE_MODEL).any():  # paired by seed: same cohort, same folds
        wide = c.pivot_table(index="seed", columns="model", values="cindex", aggfunc="first")
        for model in [m for m in c["model"].unique() if m != REFERENCE_MODEL]:
            m, s, n = _mean_sd((wide[REFERENCE_MODEL] - wide[model]).dropna())
            rows.append({"table": "paired", "model": model, "what": f"{REFERENCE_MODEL} − {model} (C-index)",
                         "mean": m, "sd": s, "n_seeds": n})  # fmt: skip
    loc = tables["localisation"]
    for (model, path, score), g in loc.groupby(["model", "path", "score"], sort=False) if not loc.empty else []:
        m, s, n = _mean_sd(g["auroc"])
        rows.append({"table": "localisation", "model": model, "what": f"{path} {score.removeprefix('auroc_')}",
                     "mean": m, "sd": s, "n_seeds": n})  # fmt: skip
    ig = tables["ig_shares"]
    for cond, g in ig.groupby("condition", sort=False) if not ig.empty else []:
        for col in [x for x in g.columns if x.startswith("path:")]:
            m, s, n = _mean_sd(g[col])
            rows.append({"table": "ig_shares", "model": "survpgc", "what": f"{col.removeprefix('path:')} share, {cond}",
                         "mean": m, "sd": s, "n_seeds": n})  # fmt: skip
    return rows


def _seed_origin(seeds: Sequence[int]) -> str:
    dev = sorted(set(seeds) & DEVELOPMENT_SEEDS)
    if dev:
        return f"development seeds {dev}: a check of the pipeline, not a result on unseen cohorts"
    return "none is a development seed"


def _markdown(record: dict[str, Any], tables: dict[str, pd.DataFrame], summary: pd.DataFrame) -> str:
    n = tables["cindex"]["seed"].nunique() if not tables["cindex"].empty else 0
    lines = [
        "# Truth study",
        "",
        f"{n} of {len(record['seeds'])} seeds finished: {', '.join(map(str, record['seeds']))} "
        f"({_seed_origin(record['seeds'])}). {record['n_patients']} patients per cohort; recipe overrides: "
        f"{', '.join(record['overrides']) or 'the defaults'}; synthetic settings: "
        f"{json.dumps(record['synth']) if record['synth'] else 'the defaults'}.",
        "",
        "Mean ± sd over seeds.",
        "",
    ]
    for table, title in (
        ("cindex", "C-index"),
        ("paired", f"Paired differences ({REFERENCE_MODEL} − model on the same cohort and folds, per seed)"),
        ("localisation", "Localisation AUROC"),
        ("ig_shares", "IG shares"),
    ):
        part = summary[summary["table"] == table] if not summary.empty else summary
        if part.empty:
            continue
        lines += [f"## {title}", "", "| model | measure | mean ± sd | seeds |", "|---|---|---|---|"]
        lines += [
            f"| {r['model']} | {r['what']} | {_fmt(r['mean'], r['sd'])} | {r['n_seeds']} |" for _, r in part.iterrows()
        ]
        lines.append("")
    return "\n".join(lines)
