"""Benchmark of the survival core against the libraries users would otherwise call.

Prints wall time per call (best of several repeats), the ratio to the reference implementation and the
peak resident memory of the process. Run on demand: ``make bench`` (never part of the tests).
"""

from __future__ import annotations

import resource
import time
import warnings

import numpy as np


def best_of(fn, repeats: int = 5) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def row(name: str, ours: float, ref: float | None, ref_name: str = "") -> None:
    ratio = f"speed-up {ref / ours:7.2f}x vs {ref_name} ({ref * 1e3:.2f} ms)" if ref else ""
    print(f"{name:<44} {ours * 1e3:10.2f} ms  {ratio}")


def main() -> None:
    import torch
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored
    from torchsurv.loss.cox import neg_partial_log_likelihood

    from survpgc.survival.losses import cox_ph_loss, nll_survival_loss
    from survpgc.survival.metrics import harrell_cindex
    from survpgc.survival.stats import bootstrap_cindex

    rng = np.random.default_rng(0)
    n_boot = 200
    print(f"{'operation':<44} {'ours':>13}  comparison")
    for n in (300, 1000, 3000):
        risk = rng.normal(size=n)
        t = np.round(rng.exponential(40 * np.exp(-risk)) + 0.5, 1)
        e = rng.random(n) < 0.35
        ours = best_of(lambda t=t, e=e, risk=risk: harrell_cindex(t, e, risk))
        ref = best_of(lambda t=t, e=e, risk=risk: concordance_index(t, -risk, e))
        row(f"harrell_cindex n={n}", ours, ref, "lifelines")
        ours = best_of(lambda t=t, e=e, risk=risk: bootstrap_cindex(t, e, risk, n=n_boot, seed=0), repeats=2)
        idx = np.random.default_rng(1).integers(0, n, size=(n_boot, n))

        def loop(t=t, e=e, risk=risk, idx=idx):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for ii in idx:
                    concordance_index_censored(e[ii], t[ii], risk[ii])

        ref = best_of(loop, repeats=2)
        row(f"bootstrap_cindex n={n}, {n_boot} resamples", ours, ref, "sksurv loop")

    for n in (256, 4096):
        logits = torch.randn(n, 4, requires_grad=True)
        y = torch.randint(0, 4, (n,))
        ev = torch.rand(n) < 0.35

        def nll(logits=logits, y=y, ev=ev):
            nll_survival_loss(logits, y, ev).backward()

        row(f"nll_survival_loss fwd+bwd batch={n}", best_of(nll), None)
        r = torch.randn(n, requires_grad=True)
        tt = torch.round(torch.rand(n) * 100) + 1

        def cox(r=r, tt=tt, ev=ev):
            cox_ph_loss(r, tt, ev, ties="efron").backward()

        def ts(r=r, tt=tt, ev=ev):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                neg_partial_log_likelihood(r, ev, tt, ties_method="efron").backward()

        row(f"cox_ph_loss efron fwd+bwd n={n}", best_of(cox), best_of(ts), "torchsurv")
    print(f"peak resident memory {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
