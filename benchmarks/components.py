"""Which parts of the true risk each model of a truth study follows, seed by seed.

For every finished seed of a ``survpgc study truth`` folder (``seed<S>/cohort/truth.csv`` and the run in
``seed<S>/run``), per model and fold on the test cases: Harrell's C of the model's risk, of the true risk (the
oracle) and of each part of the true risk alone (pathology = the planted texture, clinical = stage + age,
genomic = the pathway score, and everything but the texture), and the Spearman correlation of the model's risk
with each standardised component (texture, stage, age, pathway). Folds are averaged per seed, then reported as
mean ± sd over seeds, with the paired difference of every model to ``--reference`` (same cohort, same folds).

It answers "does a model use the texture at all, and how much of the true risk's C does it recover from each
input", which the C-index alone hides (the same C can come from different inputs). The fold computations are
those of ``benchmarks/recipe.py`` (``fold_means``).

    python benchmarks/components.py --study truth [--reference survpgc]

writes ``components.csv`` (per seed and model) and ``components.md`` into the study folder and prints the table.
Several studies on the same cohorts (``--data-from``: same seeds, same folds) are compared as
``--study minilm=DIR1 --study words=DIR2``: every model is named ``model [label]``, the reference is the first
study's, and the tables go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recipe import PARTS, RHOS, fold_means, truth_risks


def per_seed(study: Path, label: str | None = None):
    import pandas as pd

    record = json.loads((study / "study.json").read_text())
    rows = []
    for seed in record["seeds"]:
        folder = study / f"seed{seed}"
        if not (folder / "run" / "predictions.csv").is_file():
            continue
        data = Path(record["data_from"]) / folder.name if record.get("data_from") else folder  # --data-from
        truth = truth_risks(data / "cohort" / "truth.csv")
        for r in fold_means(folder / "run", truth):
            if label:
                r["model"] = f"{r['model']} [{label}]"
            rows.append({"seed": seed, "n_patients": len(truth["oracle_c"]), **r})
    if not rows:
        raise SystemExit(f"{study}: no finished seed (seed<S>/run/predictions.csv)")
    return pd.DataFrame(rows)


def table(runs, reference: str):
    import pandas as pd

    cols = ["test_c", "oracle_c", *PARTS, *RHOS]
    wide = runs.pivot_table(index="seed", columns="model", values="test_c", aggfunc="first")
    out = []
    for model, g in runs.groupby("model", sort=False):
        row = {"model": model, "n_seeds": len(g)}
        for c in cols:
            row[c] = (g[c].mean(), g[c].std(ddof=1))
        if reference in wide and model != reference:
            d = (wide[model] - wide[reference]).dropna()
            row[f"minus_{reference}"] = (d.mean(), d.std(ddof=1))
        out.append(row)
    return pd.DataFrame(out)


def markdown(t, reference: str) -> str:
    def ms(v):
        return "" if not isinstance(v, tuple) or v[0] != v[0] else f"{v[0]:.3f} ± {v[1]:.3f}"

    head = ["model", "test C", f"− {reference} (paired)", *RHOS, "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in t.iterrows():
        cells = [r["model"], ms(r["test_c"]), ms(r.get(f"minus_{reference}"))]
        cells += [ms(r[c]) for c in RHOS] + [str(r["n_seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    first = t.iloc[0]
    lines += ["", "The true risk and its parts alone, on the same test cases (C-index):", "",
              "| oracle | " + " | ".join(PARTS) + " |", "|" + "---|" * (len(PARTS) + 1),
              "| " + " | ".join(ms(first[c]) for c in ("oracle_c", *PARTS)) + " |"]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--study",
        required=True,
        action="append",
        metavar="[LABEL=]DIR",
        help="a survpgc study truth folder (repeat, with labels, to compare studies on the same cohorts)",
    )
    ap.add_argument("--reference", default="survpgc", help="model the paired differences are taken to")
    ap.add_argument("--out", help="folder of the tables (default: the study folder; required with several)")
    args = ap.parse_args()
    import pandas as pd

    specs = [(lab if sep else None, Path(d)) for lab, sep, d in (x.rpartition("=") for x in args.study)]
    if len(specs) > 1 and (not args.out or any(lab is None for lab, _ in specs)):
        raise SystemExit("several studies need a LABEL= on each and --out")
    runs = pd.concat([per_seed(d, lab) for lab, d in specs], ignore_index=True)
    if specs[0][0]:
        args.reference = f"{args.reference} [{specs[0][0]}]"
    study = Path(args.out) if args.out else specs[0][1]
    study.mkdir(parents=True, exist_ok=True)
    runs.to_csv(study / "components.csv", index=False)
    text = (
        f"{runs['seed'].nunique()} seeds ({', '.join(map(str, sorted(runs['seed'].unique())))}), "
        f"{int(runs['n_patients'].iloc[0])} patients; mean ± sd over seeds of the fold means on test cases. "
        "rho_*: Spearman correlation of the model's risk with each component of the true risk "
        "(coefficients texture 1.0, stage 0.7, age 0.35, pathway 0.7).\n\n"
        + markdown(table(runs, args.reference), args.reference)
    )
    (study / "components.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
