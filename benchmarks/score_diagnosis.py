"""Why do the patch scores differ? A diagnosis read from a finished truth study (``survpgc study truth``).

Nothing is retrained: the study's per-slide localisation table (``seed*/localisation.csv``: one row per test
slide, model and attention path, the AUROC of every patch score against the planted texture) and the fold
records of its runs (``seed*/run/folds/<model>_fold<k>.json``: selected epoch, per-epoch training loss and
validation C-index) are enough to test three explanations:

1. **The model looks away from the texture** (attention below chance): on how many slides does raw attention
   rank the texture below chance while integrated gradients rank it above? A model can read "how much
   texture" from the patches it attends to *instead of* the texture; attention is then anti-correlated with
   the texture and carries no sign, and gradient x input (a local linearisation at the full bag) inherits it.
2. **Longer training concentrates attention on few patches** (relevance falls with training): does a
   fold's relevance AUROC fall with the epoch its selection chose, and does the headline score (IG) fall too?
3. **Overfitting**: the training loss at the selected epoch relative to the first epoch, against the fold's
   localisation.

Prints the tables; ``--out FILE.csv`` also writes the per-fold table.

``python benchmarks/score_diagnosis.py --study /path/to/study [--model survpgc]`` (seconds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def per_fold(study: Path, model: str):
    import numpy as np
    import pandas as pd

    rows = []
    for seed_dir in sorted(study.glob("seed*")):
        loc_file = seed_dir / "localisation.csv"
        if not loc_file.exists():
            continue
        loc = pd.read_csv(loc_file)
        loc = loc[loc["model"] == model]
        for fold, g in loc.groupby("fold"):
            rec_file = seed_dir / "run" / "folds" / f"{model}_fold{fold}.json"
            if not rec_file.exists():
                continue
            rec = json.loads(rec_file.read_text())
            hist = {h["epoch"]: h for h in rec["history"]}
            best = int(rec["best_epoch"])
            row = {"seed": int(seed_dir.name[4:]), "fold": int(fold), "selected_epoch": best,
                   "loss_ratio": hist[best]["train_loss"] / hist[1]["train_loss"]}  # fmt: skip
            for path, gp in g.groupby("path"):
                for col in ("auroc_attention", "auroc_relevance"):
                    row[f"{path} {col[6:]}"] = float(np.nanmean(gp[col]))
            first = g.drop_duplicates("slide")
            for col in ("auroc_ig", "auroc_grad_input", "auroc_occlusion"):
                row[col[6:]] = float(np.nanmean(first[col]))
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, help="folder of a finished `survpgc study truth`")
    ap.add_argument("--model", default="survpgc")
    ap.add_argument("--out", default=None, help="write the per-fold table here (CSV)")
    args = ap.parse_args()
    study = Path(args.study)
    files = sorted(study.glob("seed*/localisation.csv"))
    slides = pd.concat([pd.read_csv(f).assign(seed=f.parent.name) for f in files], ignore_index=True)
    slides = slides[slides["model"] == args.model]
    if slides.empty:
        raise SystemExit(f"{study}: no localisation rows of model {args.model!r}")
    pd.set_option("display.width", 200)

    n_slides = len(slides.drop_duplicates(["seed", "slide"]))
    print(f"1. looking away ({n_slides} test slides of {len(files)} seeds, {args.model})")
    for path, g in slides.groupby("path"):
        att, ig, gi = g["auroc_attention"], g["auroc_ig"], g["auroc_grad_input"]
        ok = att.notna() & ig.notna()
        rho = spearmanr(att[ok], ig[ok]).statistic if ok.sum() > 2 else float("nan")
        print(f"   {path}: attention < 0.5 on {(att < 0.5).mean():.0%} of slides, and of those IG > 0.5 on "
              f"{(ig[att < 0.5] > 0.5).mean():.0%}; gradient x input < 0.5 on {(gi < 0.5).mean():.0%}; "
              f"Spearman(attention AUROC, IG AUROC) over slides {rho:+.2f}")  # fmt: skip

    folds = per_fold(study, args.model)
    if args.out:
        folds.to_csv(args.out, index=False)
    print(f"\n2./3. per fold ({len(folds)} folds over {folds['seed'].nunique()} seeds): Spearman with the selected "
          "epoch and with the training-loss ratio (selected / first epoch; lower = fitted harder)")  # fmt: skip
    scores = [c for c in folds.columns if c not in ("seed", "fold", "selected_epoch", "loss_ratio")]
    out = []
    for c in scores:
        ok = folds[c].notna()
        out.append({"score": c, "mean AUROC": folds.loc[ok, c].mean(),
                    "rho(selected epoch)": spearmanr(folds.loc[ok, "selected_epoch"], folds.loc[ok, c]).statistic,
                    "rho(loss ratio)": spearmanr(folds.loc[ok, "loss_ratio"], folds.loc[ok, c]).statistic})  # fmt: skip
    print(pd.DataFrame(out).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nselected epochs: {np.bincount(folds['selected_epoch']).nonzero()[0].tolist()} "
          f"(median {folds['selected_epoch'].median():g}); loss ratio {folds['loss_ratio'].mean():.3f} ± "
          f"{folds['loss_ratio'].std():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
