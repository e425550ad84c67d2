"""Training-recipe benchmark: survpgc's C-index under one-at-a-time recipe variations, selected on validation parts.

For every cohort with planted truth (``survpgc synth`` folder, with ``truth.csv``) and its patch features, and
every recipe (a set of config overrides around one of four starting points, ``CENTERS``), one
cross-validated run (:func:`survpgc.train.cv.run_cv`, nested protocol: each fold's training part holds out a
validation part, on which the epoch is selected) of survpgc. From each run's ``predictions.csv``, per fold:

* **val C**: Harrell's C of the selected model on the fold's validation part -- the *selection criterion*
  (test folds are never used to choose anything);
* **test C**: Harrell's C on the fold's test part;
* **oracle C**: Harrell's C of ``truth.csv``'s ``true_risk`` on the same test cases (the ceiling).

Each is averaged over folds (one number per cohort), then reported as mean ± sd over cohorts. The recipe with
the highest mean val C over all cohorts is the chosen one (``--baselines-at best``); the baselines
(``--baselines``) are then cross-validated with that recipe's training settings on the same folds (same
``splits.seed``, same cohort) in one more run per cohort, so each row of the baseline table compares with
survpgc and the oracle on identical test cases.

Caveat, printed with the table: the val C of a recipe is that of the epoch chosen *on the same validation
part* (the best epoch of the window ``select_from_epoch .. epochs``), so it is optimistic, more so for
a wider window; the epoch variations therefore keep the default's rule "select in the second half"
(``select_from_epoch = epochs / 2``).

Runs are resumable: a rerun of the same command skips finished folds (``run_cv``'s own bookkeeping), so the
table can be rebuilt, or recipes added, without retraining. Clinical tokens are encoded once per cohort and
shared by all runs (``clinical.tokens_dir``).

One command (development seeds; ``survpgc synth --n-patients N --seed S --out DIR`` then
``survpgc extract --slides DIR/slides --out FEAT``)::

    OMP_NUM_THREADS=1 python benchmarks/recipe.py --out /tmp/recipe \\
        --cohort /tmp/syn21=/tmp/feat21 --cohort /tmp/syn22=/tmp/feat22 ...

writes ``runs.csv`` (one row per cohort × recipe × model: fold means), ``table.csv`` (mean ± sd over
cohorts, all cohorts and per cohort size) and prints the table. ``--recipes`` picks a subset by name;
``--list`` prints the recipes.
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import os
import time
from pathlib import Path

#: model entries (YAML flow) of the baselines, by id; survpgc's own entry takes the recipe's ``dropout``
MODEL_ENTRIES = {
    "abmil": "abmil",
    "coxph": "coxph",
    "snn:genomic": "{name: snn, params: {modality: genomic}}",
    "mlp:clinical": "{name: mlp, params: {modality: clinical}}",
    "survpath": "survpath",
    "mcat": "mcat",
    "survpc": "survpc",
    "survgc": "survgc",
    "porpoise": "porpoise",
}
SINGLE_MODALITY = ("abmil", "coxph", "snn:genomic", "mlp:clinical")
#: the inputs every run uses: pathway tokens of the hallmark signatures (the genomic truth is two hallmarks)
BASE = ["genomic.kind=pathways", "genomic.signatures=hallmarks", "eval.bootstrap=0", "train.device=cpu"]


#: starting points, spelled out (they do not follow the defaults, which this benchmark chose: b16+init): the
#: reference implementation's recipe (batch 1, hazard bias at 0), and batch 16 with and without the hazard bias
#: started at the training cases' constant hazards
CENTERS: dict[str, list[str]] = {
    "ref": ["train.batch_size=1", "train.init_hazard_bias=false"],
    "ref+init": ["train.batch_size=1", "train.init_hazard_bias=true"],
    "b16": ["train.batch_size=16", "train.init_hazard_bias=false"],
    "b16+init": ["train.batch_size=16", "train.init_hazard_bias=true"],
}


def _num(x: float) -> str:
    """A number as YAML reads it as a float (``2e-3`` is a string to YAML 1.1; ``0.002`` is not)."""
    return f"{x:.10f}".rstrip("0")


#: one setting changed at a time; the epoch variations keep selection in the second half of training
VARIATIONS: dict[str, dict] = {
    "": {"train": [], "dropout": None},
    **{f"epochs={e}": {"train": [f"train.epochs={e}", f"train.select_from_epoch={e // 2}"], "dropout": None}
       for e in (10, 40)},
    **{f"lr={lr:g}": {"train": [f"train.lr={_num(lr)}"], "dropout": None} for lr in (1e-4, 2e-3)},
    **{f"wd={wd:g}": {"train": [f"train.weight_decay={_num(wd)}"], "dropout": None} for wd in (1e-5, 1e-2)},
    **{f"dropout={d:g}": {"train": [], "dropout": d} for d in (0.0, 0.25, 0.5)},
    **{f"patches={p}": {"train": [f"data.n_patches={p}"], "dropout": None} for p in (8, 16)},
}  # fmt: skip
#: what the one command runs (``--recipes`` picks others: names or shell patterns such as ``b16+init,*``)
DEFAULT_RECIPES = ["ref", "b16", "b16+init"]


def recipes() -> dict[str, dict]:
    """Name -> {"train": overrides, "dropout": survpgc dropout or None (the model's default)}: every center, and
    every center with one variation (``<center>,<variation>``)."""
    out = {}
    for c, base in CENTERS.items():
        for v, var in VARIATIONS.items():
            out[f"{c},{v}" if v else c] = {"train": [*base, *var["train"]], "dropout": var["dropout"]}
    return out


def entry(model: str, dropout: float | None) -> str:
    if model == "survpgc":
        return "survpgc" if dropout is None else f"{{name: survpgc, params: {{dropout: {dropout}}}}}"
    return MODEL_ENTRIES[model]


def _finished(run_dir: Path, n_pairs: int) -> bool:
    """All fold × model records written, and predictions.csv built after the last of them."""
    records = list((run_dir / "folds").glob("*.json"))
    table = run_dir / "predictions.csv"
    return (
        len(records) == n_pairs and table.exists() and table.stat().st_mtime >= max(r.stat().st_mtime for r in records)
    )


def run_one(cohort: Path, feat: Path, tokens: Path, out: Path, recipe: dict, models: list[str], folds: int):
    """One run_cv (resumable) of ``models`` under ``recipe``; returns the run directory."""
    from survpgc.config import load_config
    from survpgc.train.cv import run_cv

    if _finished(out, len(models) * folds):
        return out  # nothing to train; run_cv would only rebuild the same tables and report
    ents = ", ".join(entry(m, recipe["dropout"]) for m in models)
    cfg = load_config(
        None,
        [f"cohort.source={cohort}", f"pathology.feature_dir={feat}", f"clinical.tokens_dir={tokens}",
         f"splits.folds={folds}", *BASE, *recipe["train"], f"models=[{ents}]"],
    )  # fmt: skip
    run_cv(cfg, out)
    return out


#: parts of the true risk (truth.csv columns, weighted by the generator's coefficients) whose C on the test cases
#: says what each modality alone could reach: pathology = the tumour texture, clinical = stage + age,
#: genomic = the pathway score; "no pathology" = everything but the texture
PARTS = {"oracle_path": ("texture",), "oracle_clin": ("stage", "age"), "oracle_gen": ("pathway",),
         "oracle_no_path": ("stage", "age", "pathway")}  # fmt: skip


#: Spearman correlation of a model's test risk with each standardised component of the true risk (whose
#: coefficients are texture 1.0, stage 0.7, age 0.35, pathway 0.7): which inputs a model actually uses
RHOS = ("rho_texture", "rho_stage", "rho_age", "rho_pathway")


def truth_risks(truth_csv: Path) -> dict[str, dict[str, float]]:
    """case id -> risk, for the oracle (``true_risk``) and each of :data:`PARTS`."""
    import pandas as pd

    from survpgc.synth.truth import COEFFICIENTS

    t = pd.read_csv(truth_csv, dtype={"case_id": str}).set_index("case_id")
    out = {"oracle_c": t["true_risk"].to_dict()}
    for key, parts in PARTS.items():
        out[key] = sum(COEFFICIENTS[p] * t[f"{p}_score"] for p in parts).to_dict()
    for p in COEFFICIENTS:  # for the correlations of a model's risk with each component (not C columns)
        out[f"score:{p}"] = t[f"{p}_score"].to_dict()
    return out


def fold_means(run_dir: Path, truth: dict[str, dict[str, float]]) -> list[dict]:
    """Per model: val C, test C, the oracle's (and its parts') test C, and the oracle's val C, each the mean
    over folds (NaN folds left out: a small validation part may have no comparable pair)."""
    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr

    from survpgc.errors import SurvpgcError
    from survpgc.survival.metrics import harrell_cindex

    def c(df, risk):
        try:
            return harrell_cindex(df["time"].to_numpy(float), df["event"].to_numpy(bool), np.asarray(risk, float))
        except SurvpgcError:  # no comparable pair / no event in a small validation part
            return float("nan")

    preds = pd.read_csv(run_dir / "predictions.csv", dtype={"case_id": str})
    metrics = pd.read_csv(run_dir / "metrics.csv")
    rows = []
    for model, g in preds.groupby("model", sort=False):
        per_fold = []
        for _, f in g.groupby("fold"):
            val, test = f[f["split"] == "val"], f[f["split"] == "test"]
            row = {"val_c": c(val, val["risk"]), "test_c": c(test, test["risk"])}
            for k, r in truth.items():
                x = np.array([r[i] for i in test["case_id"]], float)
                if k.startswith("score:"):  # Spearman correlation of the model's test risk with the component
                    row[f"rho_{k[6:]}"] = float(spearmanr(test["risk"], x).statistic)
                else:
                    row[k] = c(test, x)
            row["oracle_val_c"] = c(val, [truth["oracle_c"][x] for x in val["case_id"]])
            per_fold.append(row)
        pf = pd.DataFrame(per_fold)
        m = metrics[metrics["model"] == model]
        rows.append({"model": model, **pf.mean(skipna=True).to_dict(), "n_folds": len(pf),
                     "best_epoch": float(pd.to_numeric(m["best_epoch"], errors="coerce").mean()),
                     "seconds": float(m["seconds"].mean())})  # fmt: skip
    return rows


def summarise(runs, by: list[str]):
    """Mean and sd over cohorts of every C column, and the paired difference of val C to the recipe's center
    (``dval``; a center's own is to ``ref``: the same cohort and folds, so much of the validation parts' noise
    cancels)."""
    import pandas as pd

    cols = ["val_c", "test_c", "oracle_c", "dval", *PARTS]
    runs = runs.copy()
    center = runs.set_index(["cohort", "model", "recipe"])["val_c"]
    runs["dval"] = [
        v - center.get((c, m, r.split(",")[0] if "," in r else "ref"), float("nan"))
        for c, m, r, v in zip(runs["cohort"], runs["model"], runs["recipe"], runs["val_c"], strict=True)
    ]
    g = runs.groupby(by, sort=False)
    agg = g[cols].agg(["mean", "std"])
    out = pd.DataFrame(index=agg.index)
    for c in cols:
        out[f"{c}_mean"], out[f"{c}_sd"] = agg[(c, "mean")], agg[(c, "std")]
    for c in RHOS:
        out[c] = g[c].mean() if c in runs else float("nan")
    out["n_cohorts"] = g["val_c"].count()
    out["best_epoch"] = g["best_epoch"].mean()
    out["s_per_fold"] = g["seconds"].mean()
    return out.reset_index()


def markdown(table, keys: list[str]) -> str:
    """The table as Markdown: mean ± sd over cohorts."""

    def ms(r, c):
        return "" if r[f"{c}_mean"] != r[f"{c}_mean"] else f"{r[f'{c}_mean']:.3f} ± {r[f'{c}_sd']:.3f}"

    head = [
        *keys,
        "val C (selection)",
        "Δ val C vs center (ref)",
        "test C",
        "oracle C",
        "best epoch",
        "s / fold",
        "cohorts",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [str(r[k]) for k in keys] + [ms(r, "val_c"), ms(r, "dval"), ms(r, "test_c"), ms(r, "oracle_c")]
        cells += [f"{r['best_epoch']:.1f}", f"{r['s_per_fold']:.0f}", str(r["n_cohorts"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", action="append", default=[], metavar="SYNTH_DIR=FEATURE_DIR",
                    help="a cohort with truth.csv and its patch features (repeat)")  # fmt: skip
    ap.add_argument("--out", help="runs go to OUT/<cohort>/<recipe>/; tables to OUT/")
    ap.add_argument("--recipes", nargs="+", default=None, help="recipe names or patterns (see --list)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--baselines", nargs="*", default=list(SINGLE_MODALITY), choices=sorted(MODEL_ENTRIES))
    ap.add_argument("--baselines-at", default="best", help="'best' (highest mean val C) or a recipe name")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--list", action="store_true", help="print the recipes and exit")
    args = ap.parse_args()

    all_recipes = recipes()
    if args.list:
        for name, r in all_recipes.items():
            drop = "" if r["dropout"] is None else f" survpgc dropout={r['dropout']}"
            print(f"{name:<16} {' '.join(r['train']) or '(defaults)'}{drop}")
        return
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    chosen = []
    for pat in args.recipes or DEFAULT_RECIPES:
        hits = [r for r in all_recipes if fnmatch.fnmatchcase(r, pat)]
        if not hits:
            raise SystemExit(f"no recipe matches {pat!r}; --list shows them")
        chosen += [h for h in hits if h not in chosen]
    if not args.cohort or not args.out:
        raise SystemExit("give --out and at least one --cohort SYNTH_DIR=FEATURE_DIR")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from survpgc.clinical.encode import encode_clinical

    t_all = time.perf_counter()
    cohorts = []
    for spec in args.cohort:
        syn, _, feat = spec.partition("=")
        syn, feat = Path(syn), Path(feat)
        truth = truth_risks(syn / "truth.csv")
        name = f"{syn.name}_n{len(truth['oracle_c'])}"
        tokens = out / name / "clinical"
        if not (tokens / "manifest.json").exists():
            encode_clinical(syn, tokens)  # once per cohort, shared by every run
        cohorts.append((name, syn, feat, tokens, truth))

    rows = []

    def collect(name, recipe_name, run_dir, truth):
        for r in fold_means(run_dir, truth):
            rows.append({"cohort": name, "n_patients": len(truth["oracle_c"]), "recipe": recipe_name, **r})

    for name, syn, feat, tokens, truth in cohorts:
        for rname in chosen:
            t0 = time.perf_counter()
            run_dir = run_one(syn, feat, tokens, out / name / rname, all_recipes[rname], ["survpgc"], args.folds)
            collect(name, rname, run_dir, truth)
            r = rows[-1]
            print(f"{name} {rname:<16} val {r['val_c']:.3f} test {r['test_c']:.3f} oracle {r['oracle_c']:.3f} "
                  f"best epoch {r['best_epoch']:.1f} ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    runs = pd.DataFrame(rows)
    surv = runs[runs["model"] == "survpgc"]
    by_recipe = summarise(surv, ["recipe"]).sort_values("val_c_mean", ascending=False)
    best = str(by_recipe["recipe"].iloc[0])
    at = best if args.baselines_at == "best" else args.baselines_at
    if at not in all_recipes:
        raise SystemExit(f"--baselines-at {at!r}: no such recipe")
    if args.baselines:
        for name, syn, feat, tokens, truth in cohorts:
            t0 = time.perf_counter()
            run_dir = run_one(syn, feat, tokens, out / name / f"baselines@{at}", all_recipes[at], args.baselines,
                              args.folds)  # fmt: skip
            collect(name, f"baselines@{at}", run_dir, truth)
            print(f"{name} baselines@{at} ({time.perf_counter() - t0:.0f} s)", flush=True)
        runs = pd.DataFrame(rows)
    runs.to_csv(out / "runs.csv", index=False)

    sel = runs[(runs["model"] == "survpgc") | (runs["recipe"] == f"baselines@{at}")].copy()
    sel["size"] = "n=" + sel["n_patients"].astype(str)
    table = pd.concat([summarise(sel, ["recipe", "model"]).assign(size="all"),
                       summarise(sel, ["size", "recipe", "model"])], ignore_index=True)  # fmt: skip
    table.to_csv(out / "table.csv", index=False)
    parts = [f"survpgc per recipe, mean ± sd over {len(cohorts)} cohorts ({args.folds}-fold nested), by val C:\n",
             markdown(by_recipe, ["recipe"])]  # fmt: skip
    for size, g in table.groupby("size", sort=False):
        is_s = g["model"] == "survpgc"
        g = pd.concat([g[is_s].sort_values("val_c_mean", ascending=False), g[~is_s]])
        parts += [f"\n\n{size} (survpgc per recipe, then the baselines at {at}):\n", markdown(g, ["recipe", "model"])]
    # which components of the true risk each model's risk follows, at the chosen recipe
    at_rows = sel[((sel["recipe"] == at) & (sel["model"] == "survpgc")) | (sel["recipe"] == f"baselines@{at}")]
    comp = pd.concat([summarise(at_rows, ["model"]).assign(size="all"), summarise(at_rows, ["size", "model"])])
    parts.append(f"\n\nSpearman correlation of each model's test risk with the true risk's components, at {at}"
                 " (the true coefficients: texture 1.0, stage 0.7, age 0.35, pathway 0.7):\n")  # fmt: skip
    parts.append("| size | model | test C | " + " | ".join(RHOS) + " |\n|" + "---|" * (len(RHOS) + 3))
    for _, r in comp.iterrows():
        cells = [f"{r[c]:.2f}" for c in RHOS]
        parts.append(f"\n| {r['size']} | {r['model']} | {r['test_c_mean']:.3f} | " + " | ".join(cells) + " |")
    # the test folds are the same for every recipe of a cohort: the parts' C from one recipe's survpgc rows
    one = sel[(sel["recipe"] == chosen[0]) & (sel["model"] == "survpgc")]
    parts.append("\n\nthe true risk and its parts on the same test cases (C of the part alone):\n")
    parts.append("| size | oracle_c | " + " | ".join(PARTS) + " |\n|" + "---|" * (len(PARTS) + 2))
    for size, g in pd.concat([one.assign(size="all"), one]).groupby("size", sort=False):
        cells = [f"{g[k].mean():.3f} ± {g[k].std():.3f}" for k in ("oracle_c", *PARTS)]
        parts.append(f"\n| {size} | " + " | ".join(cells) + " |")
    text = "".join(parts)
    (out / "table.md").write_text(text + "\n")
    print("\n" + text)
    print(
        f"\nchosen by val C: {best}; baselines at {at}. Val C is that of the epoch selected on the same part"
        f" (optimistic). Total {time.perf_counter() - t_all:.0f} s. Files: {out}/runs.csv, table.csv, table.md"
    )


if __name__ == "__main__":
    main()
