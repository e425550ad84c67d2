"""Calibration benchmark: does ``train.init_hazard_bias`` make a bundle calibrated on an external cohort?

For each seed: a synthetic training cohort (``--n`` patients, that seed) and an external one (seed + 10000,
another sample of the same population), no rendered slides. For abmil, one feature file per slide: ``--dim``
features per patch, Gaussian noise plus, in a share of the patches equal to the case's true tumour-texture
fraction (``truth.csv``), a fixed "texture" direction -- what a patch encoder would see of the generator's
texture, so the bag carries the texture part of the true risk. Per model and setting (init off / on): a
bundle trained on all training cases for ``--epochs`` epochs with the default recipe otherwise
(:func:`survpgc.deploy.fit.train_bundle`), then :func:`survpgc.deploy.validate.validate_bundles` on the
external cohort. Printed: per seed, then mean +- sd over seeds: Harrell C (and the true risk's C, the
oracle), the D-calibration p, the horizon calibration (GND) p and observed/expected deaths at 12 and 36
months, and the mean predicted S(12) against the external cohort's Kaplan-Meier S(12).

With ``--cv K`` (issue 15's check "external C within 0.05 of the CV estimate"), every model is also
cross-validated on the training cohort with the same settings (K folds, nested protocol, seed of the cohort),
and the table gains ``cv_cindex`` (mean test C over folds), ``cv_oracle`` (the true risk's C on the same folds)
and ``ext_minus_cv`` (external C of the bundle minus the CV estimate); the init-on bundle is then trained as a
user would, from that run (``survpgc train --from-run``: the median of the folds' selected epochs).

Run on demand (about 1 min per seed and model on one CPU thread with the defaults):
``OMP_NUM_THREADS=1 python benchmarks/calibration_init.py [--seeds 101 202 303] [--models snn:genomic abmil]
[--cv 5] [--settings init|both]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

MODELS = {
    "snn:genomic": "{name: snn, params: {modality: genomic}}",
    "abmil": "abmil",
    "survpgc": "survpgc",
}
#: from validate_bundles (the horizon columns read S(t) as its step function), then the same horizons with S(t)
#: by constant-hazard interpolation (survival.calibration.survival_at, which its D-calibration already uses)
COLUMNS = ["cindex", "oracle_cindex", "dcal_p", "cal_p_12", "oe_12", "cal_p_36", "oe_36",
           "cal_p_12_ch", "oe_12_ch", "cal_p_36_ch", "oe_36_ch", "S12_pred", "S12_km",
           "cv_cindex", "cv_oracle", "ext_minus_cv"]  # fmt: skip
HORIZONS = (12.0, 36.0)


def write_features(cohort_dir: Path, feat: Path, *, dim: int, seed: int) -> None:
    """One .h5 per slide: noise, plus the texture direction in a ``texture_fraction`` share of the patches."""
    import numpy as np
    import pandas as pd

    from survpgc.data.features import write_feature_file

    feat.mkdir(parents=True, exist_ok=True)
    cohort = pd.read_csv(cohort_dir / "cohort.csv")
    truth = pd.read_csv(cohort_dir / "truth.csv").set_index("case_id")["texture_fraction"]
    rng = np.random.default_rng(seed)
    direction = np.random.default_rng(0).normal(size=dim)
    direction *= 2.0 / np.linalg.norm(direction)
    for case, sid in zip(cohort["case_id"], cohort["slide_id"], strict=True):
        n = int(rng.integers(16, 48))
        x = rng.normal(size=(n, dim))
        x[rng.random(n) < float(truth[case])] += direction
        coords = np.stack([np.arange(n) * 256, np.zeros(n, int)], axis=1)
        write_feature_file(feat / f"{Path(sid).stem}.h5", x.astype(np.float32), coords, slide_id=sid,
                           patch_size=256, encoder="synthetic-texture", target_magnification=20.0)  # fmt: skip


def calibration_columns(edges, surv, t_obs, e_obs) -> dict[str, float]:
    """D-calibration, and GND p / O/E at each horizon with S(t) read both ways (step: ``_s`` keys are not
    returned, they are validate_bundles' own; constant hazard: ``_ch``); also mean S(12) and KM(12)."""
    import numpy as np

    from survpgc.errors import SurvpgcError
    from survpgc.survival.calibration import calibration_at, d_calibration, survival_at

    out: dict[str, float] = {}
    try:
        out["dcal_p"] = d_calibration(t_obs, e_obs, survival_at(edges, surv, t_obs[:, None])[:, 0]).p_value
    except SurvpgcError:
        out["dcal_p"] = float("nan")
    step = np.concatenate([np.ones((len(surv), 1)), surv], axis=1)  # as deploy.validate.step_survival
    for t in HORIZONS:
        for suffix, pred in (("", step[:, np.searchsorted(edges[1:-1], t, side="right")]),
                             ("_ch", survival_at(edges, surv, [t])[:, 0])):  # fmt: skip
            try:
                res = calibration_at(t_obs, e_obs, pred, t)
                out[f"cal_p_{t:g}{suffix}"], out[f"oe_{t:g}{suffix}"] = res.p_value, res.oe_ratio
                if t == 12.0 and suffix == "":
                    out["S12_pred"], out["S12_km"] = res.predicted_overall, res.observed_overall
            except SurvpgcError:
                out[f"cal_p_{t:g}{suffix}"] = out[f"oe_{t:g}{suffix}"] = float("nan")
    return out


def overrides(train_dir: Path, root: Path, model: str, seed: int, args, *, init: bool) -> list[str]:
    """The config of one model on one training cohort: the bundle's and the CV run's common part."""
    return [f"cohort.source={train_dir}", f"pathology.feature_dir={root / f'feat_{train_dir.name}'}",
            f"models=[{MODELS[model]}]", "train.device=cpu", f"train.batch_size={args.batch_size}",
            f"train.init_hazard_bias={'true' if init else 'false'}", f"seed={seed}"]  # fmt: skip


def cv_estimate(train_dir: Path, root: Path, model: str, seed: int, args) -> dict[str, float]:
    """K-fold nested CV of ``model`` on the training cohort (init on, the run's other settings as the bundle's):
    mean test C over folds and the oracle's on the same folds."""
    from survpgc.config import load_config
    from survpgc.train.cv import run_cv

    cfg = load_config(None, [*overrides(train_dir, root, model, seed, args, init=True), f"train.epochs={args.epochs}",
                             f"splits.folds={args.cv}", f"splits.seed={seed}", "eval.bootstrap=0"])  # fmt: skip
    t0 = time.perf_counter()
    run = root / f"cv_{seed}_{model.replace(':', '-')}"
    res = run_cv(cfg, run)
    row = res.summary.iloc[0]
    print(f"seed {seed} {model}: {args.cv}-fold CV C {row['cindex_mean']:.3f} in {time.perf_counter() - t0:.0f} s")
    return {"cv_cindex": float(row["cindex_mean"]), "cv_oracle": float(row.get("oracle_cindex_mean", float("nan"))),
            "run": run}  # fmt: skip


def main() -> None:
    import numpy as np
    import pandas as pd

    from survpgc.config import TrainConfig, load_config
    from survpgc.data.cohort import open_cohort
    from survpgc.deploy.bundle import load_bundle
    from survpgc.deploy.fit import train_bundle
    from survpgc.deploy.validate import validate_bundles
    from survpgc.survival.losses import constant_hazard_logits
    from survpgc.synth import generate_synthetic_cohort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 202, 303], help="training-cohort seeds")
    ap.add_argument("--models", nargs="+", default=["snn:genomic", "abmil"], choices=sorted(MODELS))
    ap.add_argument("--n", type=int, default=200, help="patients per cohort")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="default: the recipe's")
    ap.add_argument("--dim", type=int, default=32, help="patch feature dim (abmil)")
    ap.add_argument("--out", default=None, help="keep cohorts, bundles and reports here (default: a temp dir)")
    ap.add_argument("--cv", type=int, default=0, help="also K-fold CV on the training cohort (0: no)")
    ap.add_argument("--settings", choices=["both", "init"], default="both",
                    help="init_hazard_bias off and on, or on only (the default recipe)")  # fmt: skip
    args = ap.parse_args()

    rows = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="survpgc-calinit-") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        for seed in args.seeds:
            train_dir, ext_dir = root / f"train_{seed}", root / f"ext_{seed}"
            for d, s in ((train_dir, seed), (ext_dir, seed + 10000)):
                if not (d / "cohort.csv").exists():
                    generate_synthetic_cohort(d, n_patients=args.n, seed=s, render_slides=False)
                    write_features(d, root / f"feat_{d.name}", dim=args.dim, seed=s)
            truth = pd.read_csv(ext_dir / "truth.csv")
            oracle = dict(zip(truth["case_id"], truth["true_risk"], strict=True))
            ext = open_cohort(ext_dir, feature_dir=root / f"feat_{ext_dir.name}")
            t_ext, e_ext = (np.asarray(a) for a in ext.survival())
            flags = (False, True) if args.settings == "both" else (True,)
            for model in args.models:
                bundles = []
                cv = {}
                if args.cv:  # the CV estimate on the training cohort, same settings as the init-on bundle
                    cv = cv_estimate(train_dir, root, model, seed, args)
                for flag in flags:
                    out = root / f"bundle_{seed}_{model.replace(':', '-')}_{'init' if flag else 'default'}"
                    if not (out / "bundle.json").exists():
                        cfg = load_config(None, overrides(train_dir, root, model, seed, args, init=flag))
                        t0 = time.perf_counter()
                        if cv and flag:  # the user's path: survpgc train --from-run (median selected epoch)
                            train_bundle(None, out, from_run=cv["run"])
                        else:
                            train_bundle(cfg, out, epochs=args.epochs)
                        print(f"seed {seed} {model} init={flag}: trained in {time.perf_counter() - t0:.1f} s")
                    bundles.append(out)
                res = validate_bundles(bundles, ext, root / f"val_{seed}_{model.replace(':', '-')}", n_bootstrap=0,
                                       oracle=oracle, created="benchmark")  # fmt: skip
                for flag, out, bv, (_, m) in zip(flags, bundles, res.bundles, res.metrics.iterrows(), strict=True):
                    edges = np.asarray(load_bundle(out).time_edges, dtype=float)
                    surv = bv.predictions[[f"surv_{k}" for k in range(len(edges) - 1)]].to_numpy(float)
                    mine = calibration_columns(edges, surv, t_ext, e_ext)
                    # the same numbers as validate's, which reads S(t) at constant hazard (the "_ch" columns)
                    for k in ("dcal_p", "cal_p_12", "oe_12", "cal_p_36", "oe_36"):
                        k_mine = k if k == "dcal_p" else f"{k}_ch"
                        assert np.isclose(mine[k_mine], m[k], equal_nan=True), (k, mine[k_mine], m[k])
                    extra = {}
                    if cv and flag:
                        extra = {"cv_cindex": cv["cv_cindex"], "cv_oracle": cv["cv_oracle"],
                                 "ext_minus_cv": float(m["cindex"]) - cv["cv_cindex"]}  # fmt: skip
                    rows.append({"model": model, "init_hazard_bias": flag, "seed": seed,
                                 **{k: m.get(k, float("nan")) for k in COLUMNS[:3]}, **mine, **extra})  # fmt: skip
            # control: the training cohort's constant hazards (closed form) for every external case -- calibrated in
            # the large by construction, no discrimination; on the last bundle's bins
            t_train, e_train = open_cohort(train_dir).survival()
            bins = np.searchsorted(edges[1:-1], t_train, side="right")
            h = 1.0 / (1.0 + np.exp(-constant_hazard_logits(bins, e_train, len(edges) - 1)))
            surv = np.broadcast_to(np.cumprod(1.0 - h), (len(t_ext), len(h)))
            rows.append({"model": "constant (KM of training)", "init_hazard_bias": None, "seed": seed,
                         "cindex": 0.5, "oracle_cindex": float(res.metrics["oracle_cindex"].iloc[0]),
                         **calibration_columns(edges, surv, t_ext, e_ext)})  # fmt: skip
    table = pd.DataFrame(rows).reindex(columns=["model", "init_hazard_bias", "seed", *COLUMNS])
    pd.set_option("display.width", 200)
    print("\nper seed (external cohort):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    agg = table.groupby(["model", "init_hazard_bias"], sort=False, dropna=False)[COLUMNS].agg(["mean", "std"])
    summary = pd.DataFrame(
        {c: [f"{a:.3g} ± {b:.2g}" for a, b in zip(agg[(c, "mean")], agg[(c, "std")], strict=True)] for c in COLUMNS},
        index=agg.index,
    )
    print(f"\nmean ± sd over seeds {args.seeds} ({args.n} patients, {args.epochs} epochs, batch {args.batch_size}):")
    print(summary.to_string())
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s; n_low p values: {int((table['dcal_p'] < 0.05).sum())} "
          f"of {len(table)} D-calibration tests reject at 0.05")  # fmt: skip


if __name__ == "__main__":
    main()
