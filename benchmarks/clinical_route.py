"""Does the clinical information reach the models? The cohorts of a truth study with the stage written coarser.

In the synthetic cohorts the clinical part of the true risk is the *main* stage (I..IV, coefficient 0.7) and
age (0.35). The clinical table writes sub-stages ("Stage IIIA"), so the clinical sentences carry 12 stage values
as words, with no order between them; ``coxph`` reduces them to the main stage (``models.coxph.main_stage``).
This benchmark makes, for every finished seed of a ``survpgc study truth`` folder, a copy of the cohort whose
``stage`` column holds the main stage only ("Stage IIIA" -> "Stage III"; everything else, the features, the
folds and the truth unchanged) and cross-validates the given models on it. Read the result with
``components.py`` beside the original study (same seeds, same folds)::

    OMP_NUM_THREADS=1 python benchmarks/clinical_route.py --study truth --out truth_main_stage \\
        --models "survpgc;mlp:clinical"
    python benchmarks/components.py --study substage=truth --study main=truth_main_stage --out cmp

If a model's correlation with the stage component rises with the main stage, the granularity of the clinical
values (12 unordered words for 136 training cases) limited it; if SurvPGC's stays near 0 while a plain MLP on the
same sentences picks the stage up, the route of the clinical tokens through SurvPGC does.

Extra ``key=value`` arguments are run-config overrides (the recipe), as for the study.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main_stage_only(folder: Path) -> None:
    """``folder/cohort.csv`` with ``stage`` reduced to the main stage ("Stage IIIA" -> "Stage III"; missing stays
    missing)."""
    import pandas as pd

    from survpgc.models.coxph import main_stage

    df = pd.read_csv(folder / "cohort.csv", keep_default_na=False)
    main = [main_stage(v) if str(v).strip() else None for v in df["stage"]]
    df["stage"] = [f"Stage {m}" if m else "" for m in main]
    df.to_csv(folder / "cohort.csv", index=False)


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, help="a finished survpgc study truth folder")
    ap.add_argument("--out", required=True, help="folder laid out as a study: seed<S>/cohort, seed<S>/run")
    ap.add_argument("--models", default="survpgc;mlp:clinical", help="';'-separated, as the study's --models")
    ap.add_argument("overrides", nargs="*", help="run-config key=value overrides")
    args = ap.parse_args()

    import torch

    from survpgc.studies.truth import cross_validate, derived_cohort, model_entry

    torch.set_num_threads(1)
    study, out = Path(args.study), Path(args.out)
    record = json.loads((study / "study.json").read_text())
    data = Path(record["data_from"]) if record.get("data_from") else study
    models = [model_entry(m) for m in args.models.split(";") if m.strip()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(
        json.dumps({"seeds": record["seeds"], "n_patients": record["n_patients"], "derived_from": str(study),
                    "change": "stage reduced to the main stage", "models": models, "overrides": args.overrides},
                   indent=1)
    )  # fmt: skip
    for seed in record["seeds"]:
        src = data / f"seed{seed}"
        if not (src / "cohort" / "truth.json").is_file():
            print(f"seed {seed}: no finished cohort in {src}, skipped")
            continue
        copy = out / f"seed{seed}" / "cohort"
        derived_cohort(src / "cohort", copy, main_stage_only)
        cross_validate(out / f"seed{seed}" / "run", copy, src / "features", models, args.overrides)
        print(f"seed {seed}: done", flush=True)


if __name__ == "__main__":
    main()
