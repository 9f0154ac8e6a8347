"""Honest numbers for an operating point: the checkpoint *and* its threshold were selected.

A threshold tuned on the validation rows is a selection exactly like the choice of
checkpoint, so the winner's estimate bootstraps the whole selection (Tsamardinos et al.
2018, as :mod:`ckptaudit.stats.selection` does for one metric): resample rows; on the
in-bag rows re-choose every checkpoint's threshold and then the best checkpoint; score that
pair on the out-of-bag rows. The mean of those scores estimates the pair's value on new
data, their 2.5/97.5 percentiles its 95% interval.

**Constraint holds** (``holds``): the share of draws in which the pair chosen in-bag still
meets the constraint on the out-of-bag rows (rows its threshold never saw). The share on all
rows (``holds_full``, the bootstrap principle's "new data") is kept beside it; it includes the
in-bag rows the threshold was tuned on and the simulation found it optimistic (reported 0.50
where 0.34 held). ``bench/simulate_operating_point.py`` measures the calibration of both.

**The threshold that would hold it at 0.9** (``safe_threshold``): the constraint tuned to a
stricter bound (``bound + margin``, :data:`MARGINS`) is put through the same bootstrap (pair
re-chosen in-bag at the stricter bound, checked against the real bound out-of-bag), its share
read with the spread of a selection on all rows (:data:`~ckptaudit.stats.operating_shares.IN_BAG_SPREAD`); the winner
checkpoint's threshold on all rows at the bound where the shares cross 0.9 (interpolated
between the two stricter bounds that bracket it, :func:`~ckptaudit.stats.operating_shares.safer`)
is the safer threshold.

Each checkpoint's column is sorted once; a resample is a weight vector over the rows, so
its curve is one cumulative sum in that order (no sort per resample).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from ..metrics.operating import OperatingPoint
from . import operating_draws as draws
from . import operating_pairs as pairs
from . import operating_shares as shares
from .operating_above import AboveProduct
from .operating_blocks import BlockCurves
from .operating_blocks import serves as _serves
from .operating_curves import FullCurves as _FullCurves
from .operating_curves import choose as _choose
from .operating_curves import make_column as _column
from .operating_curves import places as _places
from .operating_curves import rate as _rate
from .operating_curves import sorted_counts as _sorted_counts
from .operating_curves import sorted_places as _sorted_places
from .operating_curves import totals as _totals
from .operating_shares import HOLD_LEVEL
from .results import CheckpointSelection, RunSelection, WinnerEstimate

#: how much stricter than the constraint's bound a threshold may be tuned for the safer threshold
#: the safer threshold's shares come from the first draws only (each stricter bound costs a
#: choice per checkpoint and draw; 200 draws put a share of 0.9 within about +-0.02)
STRICTER_DRAWS = 200
MARGINS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)  # the first is the bound itself
#: resamples x rows per chunk (32 MB of the full bootstrap's float64 counts); the large-sample
#: path's one-byte weights take 4x the cells in fewer bytes (16M: 1000 resamples of 16,000
#: rows at once, 9% less time than chunks of 4M on bench_operating_point's 200 x 100k)
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class OperatingEstimate:
    """The pair's selection-corrected estimate and how likely its constraint holds."""

    checkpoint: int  #: index of the winner among the columns given
    raw: float
    expected: float
    interval: tuple[float, float]
    optimism: float  #: positive: the raw value flatters the pair
    holds: float | None  #: P(the constraint holds on new data): the out-of-bag margins' normal tail, noise taken out
    holds_full: float | None  #: the same on all rows (the bootstrap principle; optimistic, see the docstring)
    holds_oob: float | None  #: the plain out-of-bag share (before the noise of the out-of-bag set is taken out)
    threshold: float  #: the winner's chosen threshold (score units)
    safe_threshold: float | None  #: nearest threshold holding at HOLD_LEVEL (score units; None: none)
    safe_holds: float | None  #: its share
    draws: int
    #: the other estimators of the constraint-holds share, by name (bench/simulate_operating_point.py)
    holds_variants: dict[str, float | None] = field(default_factory=dict, repr=False, compare=False)
    #: every checkpoint's in-bag value per resample (resamples, checkpoints): intervals, tie set
    in_bag: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False, compare=False)

    def as_dict(self) -> dict[str, object]:
        """JSON shape."""
        return {
            "raw": self.raw,
            "expected_on_new_data": self.expected,
            "ci95": list(self.interval),
            "optimism": self.optimism,
            "constraint_holds": self.holds,
            "constraint_holds_all_rows": self.holds_full,
            "constraint_holds_oob_share": self.holds_oob,
            "draws": self.draws,
        }


def stricter_points(point: OperatingPoint) -> list[OperatingPoint]:
    """The point and its stricter bounds (:data:`MARGINS`; the first is the point's own), or
    the cost point alone."""
    return list(_stricter(point))


@lru_cache(maxsize=64)
def _stricter(point: OperatingPoint) -> tuple[OperatingPoint, ...]:
    # (made once per point: the pass asks for them at every checkpoint)
    return (point,) if point.is_cost else tuple(replace(point, bound=min(point.bound + d, 1.0)) for d in MARGINS)  # type: ignore[operator]


def kept_rows(full: tuple, cand: np.ndarray, s: np.ndarray, point: OperatingPoint) -> draws.KeptRows:
    """The rows of a column the large-sample path could read for ``point`` (at any stricter
    bound it may try: :func:`~ckptaudit.stats.operating_draws.kept_rows`)."""
    return draws.kept_rows(full, cand, s, stricter_points(point))


def _reach(point: OperatingPoint, full: tuple, index: int) -> int:
    """How many of :data:`MARGINS` the large-sample path tries: up to the first that is 6
    standard errors of the winner's constraint (on all rows, at its chosen threshold) above the bound."""
    tp, fp = float(full[0][0, index]), float(full[1][0, index])
    p, n = float(full[2].ravel()[0]), float(full[3].ravel()[0])
    con = float(np.nan_to_num(np.asarray(_rate(point.constraint, tp, fp, p, n)).ravel()[0], nan=0.5))  # type: ignore[arg-type]
    den = {"precision": tp + fp, "recall": p, "specificity": n}[point.constraint]  # type: ignore[index]
    se = (max(con * (1.0 - con), 0.0) / max(den, 1.0)) ** 0.5 + 1.0 / max(den, 1.0)
    return next((i + 1 for i, d in enumerate(MARGINS) if d >= 6.0 * se), len(MARGINS))


def estimate(
    scores: list[np.ndarray | draws.KeptRows],
    pos: np.ndarray,
    point: OperatingPoint,
    *,
    resamples: int = 1000,
    seed: int = 0,
    fast: bool | None = None,
    counted: list[tuple[np.ndarray, tuple]] | None = None,
) -> OperatingEstimate | None:
    """The selection-corrected estimate of the pair chosen among ``scores`` (one column per
    checkpoint, the kernel's score units; or each column's :func:`kept_rows`, on the
    large-sample path only) on targets ``pos`` (bool); None when no checkpoint meets the
    constraint on the validation rows. ``fast``: None, the large-sample
    path where it serves (:mod:`ckptaudit.stats.operating_draws`); False, never; True, on
    any size (the tests' comparison). ``counted``: each column's candidates and counts on
    all rows (:func:`~ckptaudit.stats.operating_curves.curve_counts` of the pass's curves),
    when the caller has them."""
    k_n = len(scores)
    n = pos.shape[0]
    sign = -1.0 if point.is_cost else 1.0
    if counted is None:
        counted = [_sorted_counts(np.asarray(s), pos) for s in scores]
    cands = [c for c, _ in counted]
    fulls = [f for _, f in counted]
    raw_vals, raw_idx = [], []
    for full in fulls:
        v, i = _choose(*full, point)
        raw_vals.append(v[0])
        raw_idx.append(int(i[0]))
    finite = [k for k in range(k_n) if np.isfinite(raw_vals[k])]
    if not finite:
        return None
    winner = max(finite, key=lambda k: (sign * raw_vals[k], -k))
    # the columns best first on all rows: the best in-bag soon, and the stricter bounds skip
    # the resamples a checkpoint cannot win (:func:`~ckptaudit.stats.operating_pairs.stricter_step`)
    order = sorted(range(k_n), key=lambda k: (-sign * raw_vals[k] if np.isfinite(raw_vals[k]) else np.inf, k))
    w_thresholds = np.r_[np.inf, cands[winner][::-1].astype(np.float64)]
    rng = np.random.default_rng(seed)
    stricter = [] if point.is_cost else stricter_points(point)
    large = None
    if fast is not False and not point.is_cost:
        # on the large-sample path a margin 6 standard errors of the constraint above the bound
        # holds with certainty: the stricter bounds beyond the first such one are not tried
        # (their windows reach far up the curve, and the first 0.9 share comes before them)
        reach = _reach(point, fulls[winner], raw_idx[winner])
        large = draws.plan(fulls, pos, scores, cands, [point, *stricter[:reach]], resamples, bool(fast))
        stricter = stricter if large is None else stricter[:reach]
    elif fast is not False:
        large = draws.plan(fulls, pos, scores, cands, [point], resamples, bool(fast))
    pos_w = pos if large is None else pos[large.rows]
    if large is None:
        # (every row's score: kept rows take the large-sample path)
        cols = wide_cols = [_column(c, _places(c, np.asarray(s)), pos) for c, s in zip(cands, scores, strict=True)]
        slices = [[slice(None)] * len(stricter) for _ in cols]
    else:  # the weighted rows only, each checkpoint's kept thresholds only
        # the stricter bounds' choices lie elsewhere on the curve: the union of the windows
        # serves the first STRICTER_DRAWS draws (which need them), the point's own the rest;
        # each stricter bound chooses within its own window, a slice of the union's
        own, per_bound = large.windows[0], large.windows[1:]
        cols, wide_cols = [], []
        for c, s, w, u in zip(cands, scores, own, large.union, strict=True):
            # only the rows a kept threshold flags are placed (those the widest window reaches;
            # all of them weighted rows), by their places among the weighted rows
            rows, score = draws.flagged(s, c[c.shape[0] - u[1]]) if u[1] > 0 else (np.zeros(0, np.intp), c[:0])
            by_place, g = _sorted_places(c, score)  # (the columns' sorts by place find them sorted)
            ids = np.searchsorted(large.rows, rows)[by_place]
            pos_g = pos_w[ids]
            cols.append(_column(c, g, pos_g, w, ids))
            wide_cols.append(_column(c, g, pos_g, u, ids))
        slices = [[slice(b[k][0] - c.lo, b[k][1] - c.lo + 1) for b in per_bound] for k, c in enumerate(wide_cols)]
    width = n if large is None else max(large.rows.shape[0], 1)
    shift = np.array([c.lo - w.lo for c, w in zip(cols, wide_cols, strict=True)])  # a threshold's index: own column -> wide
    chunk = max(1, min(resamples, _CHUNK_CELLS * (1 if large is None else 4) // width))
    oob_values, holds, holds_oob, in_bag = [], [], [], []
    margins: list[np.ndarray] = []
    optimisms: list[np.ndarray] = []
    noises: list[np.ndarray] = []
    # the stricter bounds (``stricter``) tried for the threshold that would hold at
    # HOLD_LEVEL: each is tuned in-bag and checked against the real bound out-of-bag, like the pair itself
    s_margins: list[list[np.ndarray]] = [[] for _ in stricter]
    s_noises: list[list[np.ndarray]] = [[] for _ in stricter]
    curves = BlockCurves if _serves(point) else _FullCurves
    # near a high recall bound most weighted rows lie above every kept threshold: summed for
    # every column at once (an indicator times the weights) where that pays
    product = None if large is None else AboveProduct.where_it_pays(cols, width)
    # the stricter bounds' draws in one chunk where that stays small (their choices cost a
    # call per checkpoint and bound)
    first = max(chunk, STRICTER_DRAWS) if width * STRICTER_DRAWS <= 4 * _CHUNK_CELLS else chunk
    done = 0
    while done < resamples:
        r = min(first if done == 0 else chunk, resamples - done)
        done += r
        early = min(r, max(STRICTER_DRAWS - (done - r), 0))  # the draws of this chunk the stricter bounds read
        counts, oob, extra_in, extra_oob = draws.draw(large, n, r, rng)
        (p_in, n_in), (p_oob, n_oob) = _totals(counts, pos_w, extra_in), _totals(oob, pos_w, extra_oob)
        # the largest in-bag total of the weighted rows: the type their sums fit in
        top = int((p_in + n_in - extra_in[0] - extra_in[1]).max(initial=0)) if counts.dtype == np.uint8 else None
        best_val = np.full(r, -np.inf)
        best_k = np.full(r, -1)  # each resample's chosen checkpoint and its threshold's index
        best_i = np.full(r, -1)
        best_in_con = np.full(r, np.nan)
        chunk_in = np.full((r, k_n), np.nan)
        above = None if product is None or top is None else product.sums(counts, top)
        s_best = [(np.full(early, -np.inf), np.full(early, -1), np.full(early, -1)) for _ in stricter]
        for k in order:
            col = cols[k]
            # every curve one column per resample (thresholds, resamples): see operating_curves;
            # a recall target's choice reads by blocks of thresholds
            col_above = None if above is None else above[k]
            sums = pairs.in_bag(curves, counts, col, None, top, col_above)
            inbag = sums(None)
            v, i, con_i = inbag.choose(point, p_in, n_in)
            chunk_in[:, k] = v
            # the point's value bounds a stricter bound's where the point met its bound in its own
            # window (a stricter bound's may reach past it: unbounded elsewhere); a block-read
            # choice bounds it by the blocks too (fmin: those alone where the point met none)
            limits = [np.where(np.isnan(v[:early]), np.inf, v[:early])] * (len(stricter) - 1)
            # (the first stricter bound is the point's own: its choices are these)
            if early and len(stricter) > 1 and pairs.could_win(s_best[1:], k, limits):
                # (a recall target's stricter windows end no later than its own: the blocks bound them)
                if curves is BlockCurves and point.target == "recall":
                    limits = list(np.fmin(v[:early], inbag.upper(stricter[1:], p_in, n_in, early)))
                shared = sums if wide_cols[k] is col else None
                wide_above = col_above if wide_cols[k].lo == col.lo else None  # (the same rows above)
                pairs.stricter_step(
                    s_best[1:],
                    k,
                    limits,
                    counts,
                    top,
                    wide_cols[k],
                    curves,
                    stricter[1:],
                    slices[k][1:],
                    p_in,
                    n_in,
                    shared,
                    wide_above,
                )
            # ties go to the first checkpoint (the columns are visited best first)
            better = np.isfinite(v) & pairs.beats(sign * v, best_val, k, best_k)
            best_val = np.where(better, sign * v, best_val)
            best_k = np.where(better, k, best_k)
            best_i = np.where(better, i, best_i)
            if con_i is not None:
                best_in_con = np.where(better, con_i, best_in_con)
        best_full_con = pairs.on_all_rows(fulls, cols, best_k, best_i, point)
        # the out-of-bag rows are read at each resample's chosen pair only
        ((best_oob, best_oob_con, best_oob_den),) = pairs.out_of_bag(oob, cols, [(best_k, best_i)], p_oob, n_oob, point)
        if early and stricter:  # the first stricter bound is the point's own (MARGINS[0] = 0): its pair is the pair
            k0 = best_k[:early]
            s_best[0] = (best_val[:early], k0, np.where(k0 >= 0, best_i[:early] + shift[np.maximum(k0, 0)], -1))
        s_oob = pairs.out_of_bag(
            oob[:, :early], wide_cols, [(bk, bj) for _, bk, bj in s_best[1:]], p_oob[:early], n_oob[:early], point
        )
        s_oob[:0] = [(best_oob[:early], best_oob_con[:early], best_oob_den[:early])] if stricter else []
        in_bag.append(chunk_in)
        usable = np.isfinite(best_oob)
        oob_values.append(best_oob[usable])
        if not point.is_cost:
            meet = np.isfinite(best_val)
            holds.append(np.where(meet, best_full_con >= point.bound - 1e-12, False))  # type: ignore[operator]
            optimisms.append((best_in_con - best_full_con)[meet & np.isfinite(best_full_con)])
            ok = meet & np.isfinite(best_oob_con)
            holds_oob.append(best_oob_con[ok] >= point.bound - 1e-12)  # type: ignore[operator]
            c_ok, d_ok = best_oob_con[ok], best_oob_den[ok]
            margins.append(c_ok - point.bound)  # type: ignore[operator]
            noises.append(c_ok * (1 - c_ok) / np.maximum(d_ok, 1))
            for m, ((bv, _, _), (_, bc, bd)) in enumerate(zip(s_best, s_oob, strict=True) if early else ()):
                okm = np.isfinite(bv) & np.isfinite(bc)
                s_margins[m].append(np.where(okm, bc - point.bound, np.nan))  # type: ignore[operator]
                s_noises[m].append(np.where(okm, bc * (1 - bc) / np.maximum(bd, 1), np.nan))
    values = np.concatenate(oob_values)
    if values.size == 0:
        return None
    raw = float(raw_vals[winner])
    expected = float(values.mean())
    low, high = np.percentile(values, [2.5, 97.5])
    hold_full = hold = hold_oob = None
    variants: dict[str, float | None] = {}
    safe_t = safe_share = None
    if not point.is_cost:
        hold_full = float(np.concatenate(holds).mean())
        hv = np.concatenate(holds_oob)
        hold_oob = float(hv.mean()) if hv.size else None
        all_margins, all_noises = np.concatenate(margins), np.concatenate(noises)
        denoised = shares.denoised_share(all_margins, all_noises)
        by_optimism = shares.optimism_share(fulls[winner], raw_idx[winner], point, np.concatenate(optimisms))
        hold = denoised
        variants = {
            "denoised out-of-bag": denoised,
            "optimism bootstrap": None if by_optimism is None else by_optimism[0],
            "optimism bootstrap, normal": None if by_optimism is None else by_optimism[1],
            "plain out-of-bag": hold_oob,
            "all rows": hold_full,
            "denoised out-of-bag, in-bag spread": shares.denoised_share(all_margins, all_noises, shares.IN_BAG_SPREAD),
        }
        steps: list[tuple[float, float | None]] = []  # (margin, its share) of each stricter bound
        for m in range(len(stricter)):
            mg, nz = np.concatenate(s_margins[m]), np.concatenate(s_noises[m])
            met = np.isfinite(mg)  # a draw where nothing meets the stricter bound in-bag fails
            share_m = shares.denoised_share(mg[met], nz[met], shares.IN_BAG_SPREAD)
            steps.append((MARGINS[m], None if share_m is None else share_m * float(met.mean())))
        safe_t, safe_share = shares.safer(steps, fulls[winner], point, w_thresholds)
    return OperatingEstimate(
        winner,
        raw,
        expected,
        (float(low), float(high)),
        sign * (raw - expected),
        hold,
        hold_full,
        hold_oob,
        float(w_thresholds[raw_idx[winner]]),
        safe_t,
        safe_share,
        int(values.size),
        variants,
        np.concatenate(in_bag),
    )


@dataclass(frozen=True)
class OperatingSelection(RunSelection):
    """A :class:`RunSelection` whose winner is a checkpoint *and* a threshold; ``operating``
    adds the pair's estimate, the constraint-holds share and the threshold that would hold
    it at 0.9 (as probabilities where the run stores logits: ``threshold``, ``safe_threshold``)."""

    operating: OperatingEstimate | None = None
    threshold: float | None = None
    safe_threshold: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """:meth:`RunSelection.as_dict` plus ``operating_point``."""
        out = super().as_dict()
        e = self.operating
        out["operating_point"] = (
            None
            if e is None
            else {
                "threshold": self.threshold,
                "constraint_holds": e.holds,
                "constraint_holds_all_rows": e.holds_full,
                "safe_threshold": self.safe_threshold,
                "safe_holds": e.safe_holds,
                "hold_level": HOLD_LEVEL,
            }
        )
        return out


class OperatingBuilder:
    """Keeps each scorable checkpoint's score column (the kernel's units) during the one
    pass, for :meth:`select`; an :data:`~ckptaudit.metrics.evaluation.Observer` feeds it.
    Where the bootstrap will take the large-sample path (``resamples`` known and rows x
    resamples at least :data:`~ckptaudit.stats.operating_draws.LARGE_CELLS`) only the rows
    it could read are kept (:func:`kept_rows`: 1.8% of the rows on bench_operating_point's
    200 x 100,000, 4.4 MB instead of 80 MB of columns) and that path is taken at any share of them."""

    kind = "operating"

    def __init__(self, run: Any, spec: Any, resamples: int | None = None) -> None:
        from .rows import MAX_ROW_BYTES

        self.run, self.spec, self.reads, self.resamples = run, spec, 0, resamples
        self.columns: dict[str, np.ndarray | draws.KeptRows] = {}
        self.sparse = False  #: the columns are :class:`~ckptaudit.stats.operating_draws.KeptRows`
        #: each column's candidates and counts on all rows, from the kernel's curve (sorted once by the pass)
        self.counted: dict[str, tuple[np.ndarray, tuple]] = {}
        self.pos: np.ndarray | None = None
        self.prep: Any = None  #: one prepared view, to turn thresholds into probabilities
        self.budget = MAX_ROW_BYTES
        self.note: str | None = None

    def add(self, ckpt: Any, prep: Any, value: float | None) -> None:
        """Keep ``ckpt``'s column (a copy: the pass reuses its buffers) and its counts on all rows."""
        from ..metrics.operating import column, evaluate
        from .operating_curves import curve_counts

        if prep is None or value is None or self.note is not None:
            return
        pos, s = column(prep, self.spec.class_index)
        if self.pos is None:
            self.pos = np.array(pos, dtype=bool)
            self.sparse = self.resamples is not None and s.shape[0] * self.resamples >= draws.LARGE_CELLS
        counted = curve_counts(evaluate(prep, self.spec)[1], s.dtype)  # the kernel's curve, cached on the view
        kept = kept_rows(counted[1], counted[0], s, self.spec.operating) if self.sparse else np.array(s, copy=True)
        self.budget -= s.nbytes if isinstance(kept, np.ndarray) else kept.index.nbytes + kept.score.nbytes
        if self.budget < 0:
            self.columns.clear()
            self.counted.clear()
            self.note = "the validation set is too large to keep every checkpoint's scores"
            return
        self.columns[ckpt.name] = kept  # (a copy: the pass reuses its buffers)
        self.counted[ckpt.name] = counted
        self.prep = prep

    def select(self, checkpoints: Any, values: tuple[float | None, ...], resamples: int, seed: int) -> RunSelection:
        """The selection statistics of the pair (see the module docstring)."""
        from ..metrics.operating import to_probability
        from .confidence import confidence_set_threshold
        from .intervals import _all_percentiles

        spec = self.spec
        names = [c.name for c in checkpoints if c.name in self.columns]
        est = None
        if names and self.pos is not None:
            cols, counted = [self.columns[n] for n in names], [self.counted[n] for n in names]
            fast = True if self.sparse else None  # (kept rows serve the large-sample path alone)
            est = estimate(cols, self.pos, spec.operating, resamples=resamples, seed=seed, fast=fast, counted=counted)
        n_rows = 0 if self.pos is None else int(self.pos.shape[0])
        if est is None:
            entries = tuple(
                CheckpointSelection(c.name, c.epoch, v, None, None, None) for c, v in zip(checkpoints, values, strict=True)
            )
            note = self.note or "no checkpoint meets the constraint on enough resamples"
            return OperatingSelection(
                self.run.name, spec.text, spec.maximize, n_rows, resamples, seed, None, None, entries, (), note
            )
        sign = 1.0 if spec.maximize else -1.0
        winner = names[est.checkpoint]
        pos_count = int(self.pos.sum())  # type: ignore[union-attr]
        winner_est = WinnerEstimate(winner, est.raw, est.expected, est.interval, est.optimism, positives=pos_count)
        v_in = est.in_bag
        finite = np.isfinite(v_in).all(axis=1)
        point_vals = np.array([values[[c.name for c in checkpoints].index(n)] for n in names], dtype=np.float64)
        if finite.any() and np.isfinite(point_vals).all():
            members, pvalues, q = confidence_set_threshold(sign * v_in[finite], sign * point_vals, est.checkpoint)
        else:
            members, pvalues, q = [est.checkpoint], np.ones(len(names)), None
        member_names = {names[j] for j in members}
        tied = (winner,) + tuple(n for n in names if n in member_names and n != winner)
        intervals = _all_percentiles(v_in)  # (each column's finite values; in blocks where all are)
        entries = []
        for c, v in zip(checkpoints, values, strict=True):
            if c.name not in self.columns:
                entries.append(CheckpointSelection(c.name, c.epoch, v, None, None, None))
                continue
            j = names.index(c.name)
            entries.append(CheckpointSelection(c.name, c.epoch, v, intervals[j], c.name in member_names, float(pvalues[j])))
        prob = lambda t: None if t is None else to_probability(self.prep, spec.class_index, t)  # noqa: E731
        return OperatingSelection(
            self.run.name,
            spec.text,
            spec.maximize,
            n_rows,
            resamples,
            seed,
            winner,
            winner_est,
            tuple(entries),
            tied,
            self.note,
            detectable_difference=q,
            operating=est,
            threshold=prob(est.threshold),
            safe_threshold=prob(est.safe_threshold),
        )
