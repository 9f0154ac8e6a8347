"""Operating-point metrics: one rate at the threshold that optimises it under a constraint.

A fraud, cancer or spam team ships a checkpoint *and a threshold*. The metric language
(docs/metrics.md) spells that question::

    recall@precision>=0.8        the most recall any threshold reaches with precision >= 0.8
    precision@recall>=0.95       the most precision with recall >= 0.95
    specificity@recall>=0.95     the most specificity with recall >= 0.95
    recall@specificity>=0.99     the most recall with specificity >= 0.99
    tpr@fpr<=0.01                alias: recall@specificity>=0.99
    cost:fn=10,fp=1              expected cost per row at the cost-minimising threshold (min)

each with ``:class=NAME`` for one class of a multiclass or multilabel run (required there).

Conventions (differentially tested against ``sklearn.metrics.precision_recall_curve`` and
``roc_curve``):

* a row is flagged when its score is **at or above** the threshold (scikit-learn's curve
  convention: the threshold is the lowest flagged score). The candidates are the distinct
  scores; tied rows are flagged together, never split;
* precision is undefined where nothing is flagged, so flagging nothing never meets a
  precision constraint; for recall/specificity constraints and cost, "flag nothing"
  (threshold +inf) is a candidate too;
* among thresholds with the same best value, the one with the better constraint value wins,
  then the higher threshold (fewer alerts);
* where no threshold meets the constraint, the value is undefined: null with a note that
  says the best the constraint reached (listed last by every view);
* the threshold is reported as a probability (a logit run's logit threshold through the
  sigmoid; a multiclass class's log-probability through exp), since serving code compares
  probabilities; the sort itself runs on the unsaturated scores.

Each checkpoint's column is sorted once (cached on the prepared view, so a spec asked for
twice, or its threshold note, reuses it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import MetricError

#: the kernel name every operating-point spec dispatches to
NAME = "operating_point"
COST = "cost"
_RATES = ("recall", "precision", "specificity")
_CONSTRAINTS = ("recall", "precision", "specificity", "fpr", "tpr")
_PATTERN = re.compile(
    r"^\s*(?P<target>[a-z]+)\s*@\s*(?P<constraint>[a-z]+)\s*(?P<op>>=|<=)\s*(?P<bound>[-+0-9.eE]+)\s*(?::(?P<opts>.*))?$"
)


@dataclass(frozen=True)
class OperatingPoint:
    """What an operating-point spec asks: maximise ``target`` subject to
    ``constraint >= bound`` (fpr constraints are stored as specificity >= 1 - F), or, for
    cost, minimise ``fn_cost x FN + fp_cost x FP`` per row."""

    target: str  #: recall, precision, specificity, or "cost"
    constraint: str | None = None  #: recall, precision or specificity
    bound: float | None = None
    fn_cost: float | None = None
    fp_cost: float | None = None

    @property
    def is_cost(self) -> bool:
        """True for ``cost:fn=A,fp=B``."""
        return self.target == COST

    def describe(self) -> str:
        """The constraint in words (``precision >= 0.8``)."""
        if self.is_cost:
            return f"cost per row with fn={self.fn_cost:g}, fp={self.fp_cost:g}"
        return f"{self.constraint} >= {self.bound:g}"


def _options(text: str, opts: str | None, allowed: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (opts or "").replace(":", ",").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise MetricError(f"metric {text!r}: option {item!r} is not KEY=VALUE")
        if key not in allowed:
            raise MetricError(f"metric {text!r}: no option {key!r} (options: {', '.join(sorted(allowed))})")
        if key in out:
            raise MetricError(f"metric {text!r}: option {key!r} given twice")
        out[key] = value
    return out


def _number(text: str, what: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise MetricError(f"metric {text!r}: {what}={value!r} is not a number") from None
    if not math.isfinite(x):
        raise MetricError(f"metric {text!r}: {what} must be finite, not {value}")
    return x


def parse_operating(text: str) -> tuple[OperatingPoint, str | None, str, float | None] | None:
    """``(point, class_ref, direction, shipped threshold)`` when ``text`` is an operating-point spec, None when
    it is not one (the caller parses it as any other metric); :class:`MetricError` for a
    malformed one."""
    stripped = text.strip()
    head = stripped.split(":", 1)[0].strip().lower()
    if head == COST:
        opts = _options(text, stripped.split(":", 1)[1] if ":" in stripped else "", {"fn", "fp", "class", "threshold"})
        if "fn" not in opts or "fp" not in opts:
            raise MetricError(f"metric {text!r}: cost needs both costs, e.g. cost:fn=10,fp=1")
        fn, fp = _number(text, "fn", opts["fn"]), _number(text, "fp", opts["fp"])
        if fn < 0 or fp < 0 or fn + fp == 0:
            raise MetricError(f"metric {text!r}: costs must be >= 0 and not both 0")
        return OperatingPoint(COST, fn_cost=fn, fp_cost=fp), opts.get("class"), "min", _shipped(text, opts)
    m = _PATTERN.match(stripped.lower()) if "@" in head else None
    if m is None:
        if "@" in head:
            raise MetricError(
                f"metric {text!r}: an operating point reads RATE@CONSTRAINT>=BOUND, e.g. recall@precision>=0.8 (docs/metrics.md)"
            )
        return None
    target, constraint, op = m["target"], m["constraint"], m["op"]
    target = "recall" if target in ("tpr", "sensitivity") else ("specificity" if target == "tnr" else target)
    if target not in _RATES:
        raise MetricError(f"metric {text!r}: the optimised rate must be one of {', '.join(_RATES)}, not {m['target']!r}")
    if constraint not in _CONSTRAINTS:
        raise MetricError(f"metric {text!r}: the constraint must be one of {', '.join(_CONSTRAINTS)}, not {constraint!r}")
    bound = _number(text, "bound", m["bound"])
    if not 0.0 <= bound <= 1.0:
        raise MetricError(f"metric {text!r}: the bound must lie in [0, 1], not {bound:g}")
    if constraint == "fpr":
        if op != "<=":
            raise MetricError(f"metric {text!r}: a false-positive rate is bounded from above: fpr<={bound:g}")
        constraint, bound = "specificity", 1.0 - bound
    elif op != ">=":
        raise MetricError(f"metric {text!r}: {constraint} is bounded from below: {constraint}>={bound:g}")
    constraint = "recall" if constraint == "tpr" else constraint
    if constraint == target:
        raise MetricError(f"metric {text!r}: the rate and its constraint must differ")
    # the original case of the class name (the pattern matched the lowered text)
    opts_raw = stripped.split(":", 1)[1] if ":" in stripped else None
    opts = _options(text, opts_raw, {"class", "threshold"})
    return OperatingPoint(target, constraint, bound), opts.get("class"), "max", _shipped(text, opts)


def _shipped(text: str, opts: dict[str, str]) -> float | None:
    """``:threshold=T``: the threshold being shipped (``check --threshold``), a probability."""
    if "threshold" not in opts:
        return None
    t = _number(text, "threshold", opts["threshold"])
    if not 0.0 <= t <= 1.0:
        raise MetricError(f"metric {text!r}: threshold must lie in [0, 1], not {t:g}")
    return t


# --------------------------------------------------------------------------- the curve


@dataclass(frozen=True)
class Curve:
    """Confusion counts at every candidate threshold of one column, highest first:
    ``thresholds[i]`` flags ``tp[i]`` positives and ``fp[i]`` negatives (score >= it). The
    last entry is +inf, "flag nothing" (0, 0), kept first in the arrays."""

    thresholds: np.ndarray  #: descending, +inf first (in the column's score units)
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int
    #: the indices where ``tp`` grows (the distinct positive scores), ascending; None: not kept
    grows: np.ndarray | None = None


def curve(pos: np.ndarray, s: np.ndarray) -> Curve:
    """The :class:`Curve` of a column: ``pos`` a boolean mask of the positive rows, ``s``
    every row's score; one sort of the column and one of its positive scores."""
    ss = np.sort(s)
    ps = np.sort(s[pos])
    n = ss.shape[0]
    if n:
        new = np.empty(n, dtype=bool)
        new[0] = True
        np.not_equal(ss[1:], ss[:-1], out=new[1:])
        distinct = np.flatnonzero(new)
    else:
        distinct = np.zeros(0, dtype=np.int64)
    m = distinct.shape[0]
    values = ss[distinct]  # the distinct scores, ascending
    # NOTE: each positive's score is one of the distinct scores, so placing the (few) positives
    # among them and counting per score gives tp at every threshold; placing every threshold
    # among the positives cost 4x as much on 100,000 rows
    at = np.searchsorted(values, ps)  # ascending
    per_score = np.bincount(at, minlength=m)
    thresholds = np.empty(m + 1, dtype=np.float64)
    thresholds[0] = np.inf
    thresholds[1:] = values[::-1]
    tp = np.empty(m + 1, dtype=np.int64)
    tp[0] = 0
    np.cumsum(per_score[::-1], out=tp[1:])
    fp = np.empty(m + 1, dtype=np.int64)
    fp[0] = 0
    np.subtract(n, distinct[::-1], out=fp[1:])  # rows >= t ...
    fp[1:] -= tp[1:]  # ... less the positives (in place: no temporary of the curve's length)
    first = np.empty(at.shape[0], dtype=bool)  # each distinct positive score once
    first[:1] = True
    np.not_equal(at[1:], at[:-1], out=first[1:])
    grows = m - at[first][::-1]  # distinct score j (ascending) is threshold m - j
    return Curve(thresholds, tp, fp, int(ps.shape[0]), int(n - ps.shape[0]), grows)


RATES = ("recall", "precision", "specificity")


def _rate(c: Curve, name: str) -> np.ndarray:
    """One rate at every threshold of ``c`` (NaN where it is undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "recall":
            return c.tp / c.n_pos if c.n_pos else np.full(c.tp.shape, np.nan)
        if name == "precision":
            flagged = c.tp + c.fp
            out = np.full(flagged.shape, np.nan)
            return np.divide(c.tp, flagged, out=out, where=flagged > 0)
        return 1.0 - c.fp / c.n_neg if c.n_neg else np.full(c.tp.shape, np.nan)


def _rates(c: Curve, names: tuple[str, ...] = RATES) -> dict[str, np.ndarray]:
    """The named rates at every threshold of ``c`` (only those asked for are computed)."""
    return {name: _rate(c, name) for name in names}


@dataclass(frozen=True)
class Choice:
    """The optimum of one curve: its value (NaN: no threshold meets the constraint), its
    index on the curve, the threshold (score units) and the best the constraint reached."""

    value: float
    index: int | None
    threshold: float | None
    constraint_best: float | None = None


def choose(c: Curve, point: OperatingPoint) -> Choice:
    """The threshold of ``c`` that optimises ``point`` (ties: the better constraint value,
    then the higher threshold). Where the curve knows where ``tp`` grows, only those
    thresholds and +inf are read: for a given ``tp`` the threshold at the lowest flagged
    positive has the fewest false positives, so every optimum, its tie rule and the best
    constraint reached lie there (a positive score each: a few percent of a curve over every
    distinct score; tests/test_operating_point.py holds both to scikit-learn's curves)."""
    if c.grows is None or c.grows.shape[0] + 1 >= c.tp.shape[0]:
        return _choose_on(c, point)
    at = np.empty(c.grows.shape[0] + 1, dtype=np.intp)
    at[0] = 0
    at[1:] = c.grows
    found = _choose_on(Curve(c.thresholds[at], c.tp[at], c.fp[at], c.n_pos, c.n_neg), point)
    return found if found.index is None else Choice(found.value, int(at[found.index]), found.threshold, found.constraint_best)


def _choose_on(c: Curve, point: OperatingPoint) -> Choice:
    """:func:`choose` over every threshold of ``c``."""
    if point.is_cost:
        n = c.n_pos + c.n_neg
        if n == 0:
            return Choice(float("nan"), None, None)
        assert point.fn_cost is not None and point.fp_cost is not None
        cost = (point.fn_cost * (c.n_pos - c.tp) + point.fp_cost * c.fp) / n
        i = int(np.argmin(cost))  # first minimum: the highest threshold
        return Choice(float(cost[i]), i, float(c.thresholds[i]))
    assert point.constraint is not None and point.bound is not None
    rates = _rates(c, (point.target, point.constraint))
    target, con = rates[point.target], rates[point.constraint]
    # NOTE: 1e-12 absorbs the float error of bounds like 0.95 = 19/20 computed as tp / n
    ok = con >= point.bound - 1e-12  # NaN (an undefined rate) compares False
    if point.target == "precision" or not (c.n_pos and c.n_neg):
        ok &= np.isfinite(target)  # a target undefined where the constraint is met
    if not ok.any():
        finite = con[np.isfinite(con)]
        return Choice(float("nan"), None, None, float(finite.max()) if finite.size else None)
    cand = np.flatnonzero(ok)
    best = target[cand].max()
    cand = cand[target[cand] == best]
    cand = cand[con[cand] == con[cand].max()]
    i = int(cand[0])  # curve order is descending threshold: the first is the highest
    return Choice(float(best), i, float(c.thresholds[i]))


# --------------------------------------------------------------------------- on a checkpoint


def column(prep: object, class_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(positive mask, score column) of the spec's class in a prepared view."""
    task = prep.task  # type: ignore[attr-defined]
    y = prep.y  # type: ignore[attr-defined]
    if prep.proba is None and prep.logit is None:  # type: ignore[attr-defined]
        raise MetricError("an operating point needs scores, but the run records hard labels")
    score = prep.score  # type: ignore[attr-defined]
    if task == "binary":
        if class_index == 0:
            return y == 0, -np.asarray(score, dtype=np.float64)
        return y.view(bool) if y.dtype == np.int8 else y == 1, score
    if class_index is None:
        raise MetricError(f"an operating point on a {task} run needs :class=NAME")
    if task == "multilabel":
        return y[:, class_index] == 1, np.ascontiguousarray(score[:, class_index])
    return y == class_index, np.ascontiguousarray(score[:, class_index])


def to_probability(prep: object, class_index: int | None, threshold: float) -> float:
    """A threshold in score units as a probability (see the module docstring)."""
    if not math.isfinite(threshold):
        return threshold
    if prep.logit is None:  # type: ignore[attr-defined]
        # a binary run's class 0 sorts by -p: its probability is 1 - p
        return 1.0 + threshold if prep.task == "binary" and class_index == 0 else threshold  # type: ignore[attr-defined]
    if prep.task == "multiclass":  # type: ignore[attr-defined]
        return math.exp(threshold)
    x = -threshold if prep.task == "binary" and class_index == 0 else threshold  # type: ignore[attr-defined]
    p = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    return 1.0 - p if prep.task == "binary" and class_index == 0 else p  # type: ignore[attr-defined]


def evaluate(prep: object, spec: object) -> tuple[Choice, Curve]:
    """The optimum of ``spec`` on one checkpoint's prepared view (cached on the view)."""
    point: OperatingPoint = spec.operating  # type: ignore[attr-defined]
    cache = prep._cache  # type: ignore[attr-defined]
    class_index = spec.class_index  # type: ignore[attr-defined]
    key_curve = ("operating-curve", class_index)
    if key_curve not in cache:
        pos, s = column(prep, class_index)
        cache[key_curve] = curve(pos, s)  # type: ignore[assignment]
    c: Curve = cache[key_curve]  # type: ignore[assignment]
    key = ("operating-choice", class_index, point)
    if key not in cache:
        cache[key] = choose(c, point)  # type: ignore[assignment]
    return cache[key], c  # type: ignore[return-value]


def cached_curve(prep: object) -> Curve | None:
    """The positive class's :class:`Curve` of a binary view, where an operating-point metric
    already made it (None: not made)."""
    cache = prep._cache  # type: ignore[attr-defined]
    found = cache.get(("operating-curve", None))
    return found if found is not None else cache.get(("operating-curve", 1))


def kernel(prep: object, spec: object) -> float:
    """The metric kernel: the optimised value (NaN where no threshold meets the constraint)."""
    return evaluate(prep, spec)[0].value


def threshold(prep: object, spec: object) -> float | None:
    """The chosen threshold as a probability (None where none meets the constraint)."""
    choice, _ = evaluate(prep, spec)
    if choice.threshold is None:
        return None
    return to_probability(prep, spec.class_index, choice.threshold)  # type: ignore[attr-defined]


THRESHOLD_NOTE = "at threshold "
TUNED, SHIPPED = "tuned", "shipped"


class OperatingNote(str):
    """A checkpoint's note that carries its numbers as typed fields, so the pick, the gate and
    the views read them without parsing text: the spec it belongs to (``spec``), which
    threshold (``kind``: :data:`TUNED`, the one the kernel chose; :data:`SHIPPED`, the one
    ``check --threshold`` gave), the threshold as a probability (``threshold``) and, for a
    shipped threshold under a constraint, whether it meets it on the validation rows
    (``meets``; None for cost). The text is what every view prints."""

    spec: str
    kind: str
    threshold: float
    meets: bool | None

    def __new__(cls, text: str, spec: str, kind: str, threshold: float, meets: bool | None = None) -> OperatingNote:
        note = super().__new__(cls, text)
        note.spec, note.kind, note.threshold, note.meets = spec, kind, threshold, meets
        return note

    def __reduce__(self) -> tuple:  # the pool's workers send notes to the parent by pickle
        return (OperatingNote, (str(self), self.spec, self.kind, self.threshold, self.meets))


def threshold_note(prep: object, spec: object) -> OperatingNote | None:
    """The note every view shows beside a defined value: ``SPEC: at threshold T`` (T the
    probability at or above which a row is flagged; ``inf``: flag nothing), T also typed."""
    t = threshold(prep, spec)
    if t is None:
        return None
    return OperatingNote(f"{spec.text}: {THRESHOLD_NOTE}{t!r}", spec.text, TUNED, t)  # type: ignore[attr-defined]


def undefined_reason(prep: object, spec: object) -> str:
    """Why the value is null: no threshold meets the constraint (with the best it reached),
    or a class without rows."""
    choice, c = evaluate(prep, spec)
    point: OperatingPoint = spec.operating  # type: ignore[attr-defined]
    if c.n_pos == 0 or (c.n_neg == 0 and point.constraint != "recall"):
        return "undefined on this validation set: it needs rows of both classes"
    best = "" if choice.constraint_best is None else f" (the best is {choice.constraint_best:.4g})"
    return f"no threshold meets {point.describe()}{best}"


def to_score(prep: object, class_index: int | None, probability: float) -> float:
    """A probability threshold in the column's score units (the inverse of :func:`to_probability`)."""
    binary0 = prep.task == "binary" and class_index == 0  # type: ignore[attr-defined]
    p = 1.0 - probability if binary0 else probability
    if prep.logit is None:  # type: ignore[attr-defined]
        return -p if binary0 else p
    if prep.task == "multiclass":  # type: ignore[attr-defined]
        return math.log(p) if p > 0 else -math.inf
    x = -math.inf if p <= 0 else (math.inf if p >= 1 else math.log(p / (1.0 - p)))
    return -x if binary0 else x


SHIPPED_NOTE = "at the shipped threshold "


def shipped_note(prep: object, spec: object) -> OperatingNote | None:
    """The note of the shipped threshold (``:threshold=T``): its rates on this checkpoint,
    ``SPEC: at the shipped threshold T: meets|misses CONSTRAINT; TARGET V`` (None: no
    shipped threshold)."""
    t = spec.threshold  # type: ignore[attr-defined]
    point: OperatingPoint = spec.operating  # type: ignore[attr-defined]
    if t is None:
        return None
    pos, s = column(prep, spec.class_index)  # type: ignore[attr-defined]
    flagged = s >= to_score(prep, spec.class_index, t)  # type: ignore[attr-defined]
    tp = int(np.count_nonzero(flagged & pos))
    fp = int(np.count_nonzero(flagged)) - tp
    n_pos = int(np.count_nonzero(pos))
    c = Curve(np.array([t]), np.array([tp]), np.array([fp]), n_pos, int(pos.shape[0]) - n_pos)
    if point.is_cost:
        n = max(c.n_pos + c.n_neg, 1)
        cost = (point.fn_cost * (n_pos - tp) + point.fp_cost * fp) / n  # type: ignore[operator]
        return OperatingNote(f"{spec.text}: {SHIPPED_NOTE}{t!r}: cost {cost!r}", spec.text, SHIPPED, t)  # type: ignore[attr-defined]
    rates = {k: float(v[0]) for k, v in _rates(c).items()}
    con = rates[point.constraint]  # type: ignore[index]
    meets = math.isfinite(con) and con >= point.bound - 1e-12  # type: ignore[operator]
    return OperatingNote(
        f"{spec.text}: {SHIPPED_NOTE}{t!r}: {'meets' if meets else 'misses'} {point.describe()} "  # type: ignore[attr-defined]
        f"({point.constraint} {con!r}); {point.target} {rates[point.target]!r}",
        spec.text,  # type: ignore[attr-defined]
        SHIPPED,
        t,
        meets,
    )


def operating_note(notes: tuple[str, ...], text: str, kind: str = TUNED) -> OperatingNote | None:
    """The :class:`OperatingNote` of spec ``text`` and ``kind`` among a checkpoint's notes
    (None: none): how the pick, the gate and the views read the pair without recomputing it."""
    return next((n for n in notes if isinstance(n, OperatingNote) and n.spec == text and n.kind == kind), None)


def tuned_threshold(notes: tuple[str, ...], text: str) -> float | None:
    """The tuned threshold (a probability) a checkpoint's notes carry for spec ``text``."""
    note = operating_note(notes, text)
    return None if note is None else note.threshold
