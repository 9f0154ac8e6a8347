"""The combination search and its honest, selection-corrected gain.

The search (:func:`search`) is a selection on the validation rows: it picks the best single
checkpoint, the best k of the last-k and of the top-k means, and a greedy ensemble, and
then the best of those. Its value on the same rows is optimistic twice over (the best single
is selected too). :func:`assess` re-runs the **whole** search on each bootstrap resample's
in-bag rows and scores what it chose on that resample's out-of-bag rows: the mean
out-of-bag gain of the chosen combination over the chosen single checkpoint is what to expect
on new data, and its 2.5-97.5 percentiles are the interval. A combination is adopted only
when that interval lies above zero (better beyond noise); otherwise no combination helps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..metrics.spec import MetricSpec
from .ensembles import Members, ensemble_mean
from .greedy import MAX_STEPS, better, greedy_select
from .rows import search_space

DEFAULT_RESAMPLES = 200
DEFAULT_SEED = 0
FAMILIES = ("last-k", "top-k", "greedy")


def k_values(n: int) -> list[int]:
    """The ensemble sizes tried for last-k and top-k: 2, 3, 5, 10, 20, 50, ... and n."""
    ks = [k for k in (2, 3, 5, 10, 20, 50, 100, 200, 500) if k <= n]
    return sorted(set(ks + [n])) if n >= 2 else []


@dataclass
class Found:
    """One family's (or the search's) choice on some row weights."""

    family: str
    label: str  #: e.g. last-5, top-3, greedy
    members: list[int]  #: indices into the members, repeated as often as they count
    rows: np.ndarray  #: per-row metric values of the ensemble (N,)
    value: float  #: its value under the weights searched on


@dataclass
class SearchResult:
    """What the search chose on some row weights."""

    single: int
    single_value: float
    found: dict[str, Found] = field(default_factory=dict)
    chosen: str | None = None  #: the family whose candidate is best (None: no family)


class SingleScores:
    """What both searches (prediction ensembles here, weight averages in :mod:`.soups`) start
    from: every single checkpoint's per-row values (``single_rows``) and the direction."""

    maximize: bool
    single_rows: np.ndarray

    def _best(self, vals: np.ndarray) -> int:
        return int(np.argmax(vals) if self.maximize else np.argmin(vals))

    def _start(self, weights: np.ndarray) -> tuple[float, np.ndarray, SearchResult]:
        """(the weights' total, each single checkpoint's value, the result holding the best single)."""
        total = weights.sum()
        singles = self.single_rows @ weights / total
        s = self._best(singles)
        return total, singles, SearchResult(s, float(singles[s]))


class Searcher(SingleScores):
    """The search over one run's members under one metric; reusable across row weights."""

    def __init__(self, members: Members, spec: MetricSpec, families: tuple[str, ...] = FAMILIES, max_steps: int = MAX_STEPS):
        self.members, self.spec, self.families, self.max_steps = members, spec, families, max_steps
        self.maximize = spec.maximize
        task, y, eps = members.run.task, members.y, members.eps
        #: what the search averages (see :func:`.rows.search_space`) and the metric's rows on it
        self.space, self.rows_fn = search_space(task, spec, members.probs, y, eps)
        self.single_rows = np.stack([self.rows_fn(p.astype(np.float64)) for p in self.space])
        k = self.space.shape[0]
        self.ks = k_values(k)
        # NOTE: last-k members do not depend on the rows: their per-row values are computed once
        self.last_rows: dict[int, np.ndarray] = {}
        running = np.zeros(self.space.shape[1:], dtype=np.float64)
        for count, idx in enumerate(range(k - 1, -1, -1), start=1):
            running += self.space[idx]
            if count in self.ks:
                self.last_rows[count] = self.rows_fn(running / count)

    def search(self, weights: np.ndarray) -> SearchResult:
        """Run the whole search with rows weighted by ``weights`` (N,)."""
        total, singles, result = self._start(weights)
        k = self.space.shape[0]
        if "last-k" in self.families and self.ks:
            vals = np.array([self.last_rows[n] @ weights / total for n in self.ks])
            i = self._best(vals)
            n = self.ks[i]
            result.found["last-k"] = Found("last-k", f"last-{n}", list(range(k - n, k)), self.last_rows[n], float(vals[i]))
        if "top-k" in self.families and self.ks:
            order = np.argsort(-singles if self.maximize else singles, kind="stable")
            running = np.zeros(self.space.shape[1:], dtype=np.float64)
            best: Found | None = None
            for count, idx in enumerate(order, start=1):
                running += self.space[idx]
                if count in self.ks:
                    rows = self.rows_fn(running / count)
                    v = float(rows @ weights / total)
                    if best is None or better(v, best.value, self.maximize):
                        best = Found("top-k", f"top-{count}", [int(j) for j in order[:count]], rows, v)
                if count >= self.ks[-1]:
                    break
            assert best is not None
            result.found["top-k"] = best
        if "greedy" in self.families:
            chosen, v = greedy_select(self.space, self.rows_fn, weights, self.maximize, self.max_steps)
            rows = self.rows_fn(ensemble_mean(self.space, chosen))
            result.found["greedy"] = Found("greedy", "greedy", chosen, rows, float(rows @ weights / total))
        for family in self.families:
            f = result.found.get(family)
            if f is None:
                continue
            if result.chosen is None or better(f.value, result.found[result.chosen].value, self.maximize):
                result.chosen = family
        return result


@dataclass(frozen=True)
class Assessment:
    """The corrected gains of one run's search, from the bootstrap."""

    resamples: int
    #: family (and "search": the whole search) -> out-of-bag gains over the chosen single,
    #: oriented so that positive is better, one per resample
    gains: dict[str, np.ndarray]
    #: family -> out-of-bag values of the candidate chosen in-bag
    values: dict[str, np.ndarray]
    single_values: np.ndarray  #: out-of-bag values of the single checkpoint chosen in-bag

    def summary(self, key: str) -> tuple[float, tuple[float, float]]:
        """Mean corrected gain of ``key`` and its 95% percentile interval."""
        g = self.gains[key]
        lo, hi = np.percentile(g, [2.5, 97.5])
        return float(g.mean()), (float(lo), float(hi))


def assess(searcher: Searcher, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> Assessment:
    """Re-run the whole search on each resample's in-bag rows and score its choices on the
    out-of-bag rows (stratified by class, as the selection statistics draw them)."""
    from ..stats.weights import _weight_chunks

    run = searcher.members.run
    y = searcher.members.y
    strata = y.astype(np.int64) if run.task in ("binary", "multiclass") else np.zeros(y.shape[0], dtype=np.int64)
    rng = np.random.default_rng(seed)
    sign = 1.0 if searcher.maximize else -1.0
    keys = [*searcher.families, "search"]
    gains: dict[str, list[float]] = {key: [] for key in keys}
    values: dict[str, list[float]] = {key: [] for key in keys}
    singles: list[float] = []
    for chunk in _weight_chunks(strata, resamples, rng, out_of_bag=True):
        k = chunk.shape[0] // 2
        for i in range(k):
            w = chunk[i].astype(np.float64)
            oob = chunk[k + i].astype(np.float64)
            if oob.sum() == 0:
                continue
            res = searcher.search(w)
            single = float(searcher.single_rows[res.single] @ oob / oob.sum())
            singles.append(single)
            for key in keys:
                family = res.chosen if key == "search" else key
                found = res.found.get(family) if family is not None else None
                v = single if found is None else float(found.rows @ oob / oob.sum())
                values[key].append(v)
                gains[key].append(sign * (v - single))
    return Assessment(
        len(singles),
        {key: np.array(v) for key, v in gains.items()},
        {key: np.array(v) for key, v in values.items()},
        np.array(singles),
    )
