"""Simulation: are the operating point's honest numbers honest? (issue 20)

A known generative model: 5% positives; 50 checkpoints whose scores are
``mu_k * y + sqrt(rho) z + sqrt(1 - rho) e_k`` (z shared by all checkpoints, as successive
epochs of one training run are; each score has unit noise variance), so every pair
(checkpoint k, threshold t) has a closed-form truth: recall ``Phi(mu_k - t)``, false-positive
rate ``Phi(-t)``, precision from both and the prior. Each simulated run draws n validation
rows, chooses the pair by ``recall@precision>=P`` (the kernel's conventions) and reports:

* the naive tuned value's optimism (raw validation value minus the truth of the chosen pair);
* the selection-corrected estimate (:func:`ckptaudit.stats.operating.estimate`): mean error
  against the truth, and how often its 95% interval covers the truth;
* "constraint holds" calibration: by bin of the reported share, how often the chosen
  threshold's true precision meets P (both the full-data and the out-of-bag variant).

    python bench/simulate_operating_point.py --runs 100 --resamples 200
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.stats import norm

from ckptaudit.metrics import operating as op
from ckptaudit.stats.operating import estimate


def truth(mu: float, t: float, prior: float) -> tuple[float, float]:
    """(recall, precision) of threshold t on a checkpoint with separation mu."""
    rec = float(norm.sf(t - mu))
    fpr = float(norm.sf(t))
    flagged = prior * rec + (1 - prior) * fpr
    return rec, (prior * rec / flagged if flagged > 0 else float("nan"))


def one_run(rng, n, mus, rho, prior, point, resamples, seed, fast=None):
    y = rng.random(n) < prior
    z = rng.normal(size=n)
    cols = [mu * y + math.sqrt(rho) * z + math.sqrt(1 - rho) * rng.normal(size=n) for mu in mus]
    est = estimate(cols, y, point, resamples=resamples, seed=seed, fast=fast)
    if est is None:
        return None
    rec, prec = truth(mus[est.checkpoint], est.threshold, prior)
    return est, rec, prec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--checkpoints", type=int, default=50)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--precision", type=float, default=0.6)
    ap.add_argument("--rho", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fast", action="store_true", help="force the large-sample path at every size")
    args = ap.parse_args()
    prior = 0.05
    point = op.OperatingPoint("recall", "precision", args.precision)
    rng = np.random.default_rng(args.seed)
    mus = np.linspace(2.0, 2.6, args.checkpoints)
    print(
        f"recall@precision>={args.precision}, {args.checkpoints} checkpoints, mu 2.0-2.6, rho {args.rho}, 5% positives, "
        f"{args.runs} runs of {args.resamples} resamples per size, seed {args.seed}{', large-sample path forced' if args.fast else ''}"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        started = time.perf_counter()
        rows = []
        for r in range(args.runs):
            out = one_run(rng, n, mus, args.rho, prior, point, args.resamples, args.seed + r, True if args.fast else None)
            if out is not None:
                rows.append(out)
        est = [e for e, _, _ in rows]
        rec = np.array([t for _, t, _ in rows])
        prec = np.array([p for _, _, p in rows])
        raw = np.array([e.raw for e in est])
        exp = np.array([e.expected for e in est])
        low = np.array([e.interval[0] for e in est])
        high = np.array([e.interval[1] for e in est])
        held = prec >= args.precision
        print(
            f"\nn = {n:,}: {len(rows)} runs ({args.runs - len(rows)} with no pair meeting the constraint), "
            f"{time.perf_counter() - started:.0f} s"
        )
        print(f"  naive tuned value - truth:        mean {np.mean(raw - rec):+.4f}")
        print(
            f"  corrected estimate - truth:       mean {np.mean(exp - rec):+.4f} (mean |error| {np.mean(np.abs(exp - rec)):.4f})"
        )
        print(f"  95% interval covers the truth:    {np.mean((low <= rec) & (rec <= high)):.1%}")
        print(f"  constraint holds in truth:        {held.mean():.1%} of runs")
        safe = [(e.safe_threshold, e.checkpoint, e.safe_holds) for e in est if e.safe_threshold is not None]
        safe_held = np.array([truth(mus[k], t, prior)[1] >= args.precision for t, k, _ in safe])
        claimed = np.array([c for _, _, c in safe])
        print(
            f"  safer threshold (claims >= 90%):  {len(safe_held)} runs, claimed mean {claimed.mean():.3f}, "
            f"held in truth {safe_held.mean():.1%}"
        )
        variants = [("reported", [e.holds for e in est])]
        variants += [(name, [e.holds_variants.get(name) for e in est]) for name in est[0].holds_variants]
        for name, share in variants:
            s = np.array([np.nan if v is None else v for v in share])
            print(f"  'constraint holds' ({name}): mean reported {np.nanmean(s):.3f} vs {held.mean():.3f} realised")
            for lo_b, hi_b in ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 0.95), (0.95, 1.01)):
                m = (s >= lo_b) & (s < hi_b)
                if m.any():
                    print(
                        f"    reported [{lo_b:.2f}, {min(hi_b, 1):.2f}): {m.sum():3d} runs, mean {s[m].mean():.3f}, held {held[m].mean():.1%}"
                    )


if __name__ == "__main__":
    main()
