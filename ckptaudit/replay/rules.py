"""The replayed rules, one small unit per family: when it stops, what it keeps, what it ships.

Each rule reads the monitor's logged sequence (one value per checkpoint, in checkpoint order,
after optional EMA smoothing) and follows its framework's own code line by line (the
versions and the differences are in docs/replay.md; tests/test_replay_frameworks.py runs the
frameworks' callbacks on the same sequences). A rule has at most one *stopper* (when
training ends) and at most one *keeper* (which checkpoints stay on disk); the keeper sees
only the evaluations up to the stop. The engine (:mod:`.engine`) only iterates rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from .grammar import RuleSpec


@dataclass(frozen=True)
class Outcome:
    """What a rule does to one run, as indices into the run's checkpoints."""

    stop: int  #: the last evaluation trained
    stopped: bool  #: whether the rule stopped training (False: it ran to the last checkpoint)
    kept: tuple[int, ...]  #: left on disk when training ends
    shipped: int | None  #: whose weights the rule hands over (None: nothing saved)


def _better(maximize: bool):
    return (lambda a, b: a > b) if maximize else (lambda a, b: a < b)


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


# ----------------------------------------------------------------------------- stoppers
def lightning_stop(values: Sequence[float | None], maximize: bool, patience: int, min_delta: float, check_finite: bool):
    """Lightning ``EarlyStopping._evaluate_stopping_criteria`` (2.x): improvement when
    ``current -/+ min_delta`` beats ``best_score``; ``wait_count`` >= patience stops; a
    non-finite value stops when ``check_finite``. Returns (stop index or None, best index)."""
    better = _better(maximize)
    delta = min_delta if maximize else -min_delta  # Lightning flips min_delta's sign for mode=min
    best = -math.inf if maximize else math.inf
    best_i: int | None = None
    wait = 0
    for i, v in enumerate(values):
        current = math.nan if v is None else v
        if check_finite and not math.isfinite(current):
            return i, best_i
        if better(current - delta, best):
            best, best_i, wait = current, i, 0
        else:
            wait += 1
            if wait >= patience:
                return i, best_i
    return None, best_i


def keras_stop(
    values: Sequence[float | None], maximize: bool, patience: int, min_delta: float, baseline: float | None, start: int
):
    """Keras 3 ``EarlyStopping.on_epoch_end``: ``wait`` grows every epoch, resets on an
    improvement over the best that also beats ``baseline``; stops when ``wait >= patience``
    and ``epoch > 0``. Epochs before ``start_from_epoch`` and missing values are ignored."""
    better = _better(maximize)
    delta = min_delta if maximize else -min_delta

    def improves(v: float, ref: float | None) -> bool:
        return ref is None or better(v - delta, ref)

    best: float | None = None
    best_i: int | None = None
    wait = 0
    for i, v in enumerate(values):
        if v is None or i < start:
            continue
        if best_i is None:
            best_i = i  # restore_best_weights: the first watched epoch until one improves
        wait += 1
        if improves(v, best):
            best, best_i = v, i
            if baseline is None or improves(v, baseline):
                wait = 0
            continue
        if wait >= patience and i > 0:
            return i, best_i
    return None, best_i


def hf_best(values: Sequence[float | None], maximize: bool) -> list[int | None]:
    """The Trainer's ``best_model_checkpoint`` after each evaluation
    (``_determine_best_metric``: any strict improvement, no threshold)."""
    better = _better(maximize)
    best = -math.inf if maximize else math.inf
    best_i: int | None = None
    out: list[int | None] = []
    for i, v in enumerate(values):
        if v is not None and better(v, best):
            best, best_i = v, i
        out.append(best_i)
    return out


def hf_stop(values: Sequence[float | None], maximize: bool, patience: int, threshold: float):
    """HF ``EarlyStoppingCallback.on_evaluate``: compared with ``state.best_metric`` *before*
    this evaluation updates it; an improvement must beat it by more than ``threshold`` to
    reset the counter, but any strict improvement still becomes the best."""
    better = _better(maximize)
    best: float | None = None
    counter = 0
    bests = hf_best(values, maximize)
    for i, v in enumerate(values):
        if v is None:
            continue  # the callback warns and does nothing
        if best is None or (better(v, best) and abs(v - best) > threshold):
            counter = 0
        else:
            counter += 1
        if best is None:
            best = -math.inf if maximize else math.inf
        if better(v, best):
            best = v
        if counter >= patience:
            return i, bests[i]
    return None, bests[-1] if bests else None


def prechelt_stop(spec: RuleSpec, values: Sequence[float | None], train: Sequence[float | None] | None):
    """Prechelt (1998), on a validation *error* E (mode=min, positive): GL(t) = 100 (E(t) /
    min E(<=t) - 1); GL_a stops at the first t with GL > a. PQ_a stops at the first end of
    a training strip of ``strip`` evaluations where GL / P_k > a, with the training progress
    P_k(t) = 1000 (sum of the strip's training errors / (k * their minimum) - 1). UP_s stops
    at the end of the s-th successive strip whose error exceeds the error a strip earlier."""
    k = int(spec.get("strip", 5))
    e_opt = math.inf
    ups = 0
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            raise UsageError(f"rule {spec.text!r}: the monitor has no finite value at checkpoint {i}")
        if v <= 0:
            raise UsageError(f"rule {spec.text!r}: Prechelt's criteria need a positive error, got {v}")
        e_opt = min(e_opt, v)
        gl = 100.0 * (v / e_opt - 1.0)
        if "gl" in spec.options and gl > spec.options["gl"]:
            return i
        strip_end = (i + 1) % k == 0
        if "pq" in spec.options and strip_end:
            assert train is not None
            strip = [t for t in train[i - k + 1 : i + 1] if t is not None and math.isfinite(t) and t > 0]
            if len(strip) < k:
                raise UsageError(f"rule {spec.text!r}: the training error is missing or not positive in the strip ending at {i}")
            progress = 1000.0 * (sum(strip) / (k * min(strip)) - 1.0)
            if gl > 0 and (progress == 0 or gl / progress > spec.options["pq"]):
                return i
        if "up" in spec.options and strip_end and i >= k:
            ups = ups + 1 if v > values[i - k] else 0  # type: ignore[operator]
            if ups >= spec.options["up"]:
                return i
    return None


# ----------------------------------------------------------------------------- keepers
def lightning_keep(
    values: Sequence[float | None], epochs: Sequence[int], maximize: bool, top_k: int, every_n: int, save_last: bool
) -> tuple[set[int], int | None]:
    """Lightning ``ModelCheckpoint`` with a monitor (2.x): at epochs where ``(epoch + 1) %
    every_n_epochs == 0``, ``check_monitor_top_k`` (strictly better than the k-th best, which
    is the first of equal worst in insertion order) then ``_update_best_and_save`` (the k-th
    removed, NaN stored as the worst); ``last.ckpt`` is written only when a top-k save
    happened at that step. Returns (kept indices, ``best_model_path``'s index)."""
    better = _better(maximize)
    worst_of = max if not maximize else min
    best_of = min if not maximize else max
    best_k: dict[int, float] = {}
    kth: int | None = None
    best: int | None = None
    last: int | None = None
    for i, (v, epoch) in enumerate(zip(values, epochs, strict=True)):
        if top_k == 0 or every_n < 1 or (epoch + 1) % every_n != 0 or v is None:
            continue
        if not (top_k == -1 or len(best_k) < top_k or better(v, best_k[kth])):  # type: ignore[index]
            continue
        k = len(best_k) + 1 if top_k == -1 else top_k
        if len(best_k) == k and k > 0:
            best_k.pop(kth)  # type: ignore[arg-type]
        best_k[i] = (math.inf if not maximize else -math.inf) if math.isnan(v) else v
        if len(best_k) == k:
            kth = worst_of(best_k, key=best_k.__getitem__)
        best = best_of(best_k, key=best_k.__getitem__)
        if save_last:
            last = i
    kept = set(best_k) | ({last} if last is not None else set())
    return kept, best


def hf_keep(n: int, limit: int | None, bests: Sequence[int | None], track_best: bool) -> set[int]:
    """HF ``rotate_checkpoints`` after every save (transformers 5.x): keep the newest and
    ``best_model_checkpoint``, delete the oldest others down to ``save_total_limit``; at the
    end of training with a limit of 1, every checkpoint but the best is deleted."""
    disk: list[int] = []
    for i in range(n):
        disk.append(i)
        if limit is None or len(disk) <= limit:
            continue
        protected = {disk[-1]}
        if track_best and bests[i] is not None:
            protected.add(bests[i])  # type: ignore[arg-type]
        keep = max(limit, len(protected))
        remaining = len(disk)
        for j in list(disk):
            if remaining <= keep:
                break
            if j not in protected:
                disk.remove(j)
                remaining -= 1
    if limit == 1 and track_best and n and bests[n - 1] is not None:
        disk = [j for j in disk if j == bests[n - 1]]
    return set(disk)


def keras_keep(values: Sequence[float | None], maximize: bool) -> int | None:
    """Keras ``ModelCheckpoint(save_best_only=True)`` to one file path: overwritten on each
    strict improvement (and, with a warning, when the monitor is missing)."""
    better = _better(maximize)
    best: float | None = None
    saved: int | None = None
    for i, v in enumerate(values):
        if v is None:
            saved = i
        elif best is None or better(v, best):
            best, saved = v, i
    return saved


def simulate(
    spec: RuleSpec,
    values: Sequence[float | None],
    maximize: bool,
    epochs: Sequence[int],
    train: Sequence[float | None] | None = None,
) -> Outcome:
    """Apply rule ``spec`` to a monitor sequence (see the module docstring)."""
    n = len(values)
    o = spec.options
    stop: int | None = None
    best: int | None = None
    stops = "patience" in o or spec.family == "prechelt"
    if spec.family == "prechelt":
        if maximize:
            raise UsageError(f"rule {spec.text!r}: Prechelt's criteria are defined on an error (mode=min)")
        stop = prechelt_stop(spec, values, train)
        upto = values[: n if stop is None else stop + 1]
        best = min((i for i, v in enumerate(upto) if _finite(v)), key=lambda i: (upto[i], i), default=None)  # type: ignore[arg-type, return-value]
    elif "patience" in o and spec.family == "lightning":
        stop, best = lightning_stop(values, maximize, o["patience"], o.get("min_delta", 0.0), o.get("check_finite", True))
    elif "patience" in o and spec.family == "keras":
        stop, best = keras_stop(
            values, maximize, o["patience"], o.get("min_delta", 0.0), o.get("baseline"), o.get("start_from_epoch", 0)
        )
    elif "patience" in o and spec.family == "hf":
        stop, best = hf_stop(values, maximize, o["patience"], o.get("threshold", 0.0))
    last = n - 1 if stop is None else stop
    trained = values[: last + 1]
    kept: set[int] = set(range(last + 1))
    shipped = best if o.get("restore", "best") == "best" else last
    if not stops:
        shipped = last
    if spec.family == "lightning" and "save_top_k" in o:
        kept, shipped = lightning_keep(
            trained, epochs[: last + 1], maximize, o["save_top_k"], o.get("every_n_epochs", 1), o.get("save_last", False)
        )
    elif spec.family == "keras" and o.get("save_best_only"):
        saved = keras_keep(trained, maximize)
        kept = set() if saved is None else {saved}
        shipped = saved
    elif spec.family == "hf" and ("save_total_limit" in o or "load_best_model_at_end" in o):
        track = bool(o.get("load_best_model_at_end")) or "patience" in o  # metric_for_best_model is set
        bests = hf_best(trained, maximize)
        kept = hf_keep(last + 1, o.get("save_total_limit"), bests, track)
        shipped = bests[-1] if o.get("load_best_model_at_end") else last
    if o.get("restore") == "last":
        shipped = last if last in kept else None
    elif o.get("restore") == "best" and shipped is not None and shipped not in kept:
        shipped = None
    return Outcome(last, stop is not None, tuple(sorted(kept)), shipped)


def smooth(values: Sequence[float | None], alpha: float) -> list[float | None]:
    """Exponential moving average s_t = alpha x_t + (1 - alpha) s_(t-1), s_0 = x_0; a
    missing value leaves the average where it was (and stays missing in the output)."""
    out: list[float | None] = []
    s: float | None = None
    for v in values:
        if v is None:
            out.append(None)
            continue
        s = v if s is None else alpha * v + (1 - alpha) * s
        out.append(s)
    return out
