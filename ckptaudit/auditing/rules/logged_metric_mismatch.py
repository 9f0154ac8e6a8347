"""The ``logged-metric-mismatch`` finding: a validation metric training logged (meta.json
``logged``) that the recorded predictions, re-scored, do not give.

The pass calls :func:`rescore_logged` once per checkpoint on the view it already prepared, so
the comparison costs one kernel per logged metric; only a disagreement pays for the search
of its likely cause (:func:`causes`): rows counted twice (a DistributedSampler pads the last
shard by repeating rows), a metric averaged over batches (F1, precision, recall and AUC do not
average), or a decision threshold other than the one the run's outputs imply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from itertools import combinations_with_replacement
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common import Rule, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ...metrics.kernels import Prepared
    from ...store.reader import Checkpoint, Run
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "logged-metric-mismatch",
    "warning/error",
    "A validation metric training logged disagrees with the same metric re-scored from the recorded predictions.",
    "A logged validation accuracy, F1, precision, recall, ROC AUC, MSE, MAE or RMSE (meta.json 'logged', by name: "
    "val_acc, eval_f1, val/auroc, ...) differs from what ckptaudit computes on the checkpoint's val.npz by more than "
    "rounding (1e-4 absolute plus 1e-4 relative; 5e-3 for AUC, which frameworks approximate on a threshold grid). "
    "The evidence names the causes that reproduce the logged number: duplicated rows (a DistributedSampler pads "
    "each shard by repeating rows), a batch-averaged metric (the mean of per-batch F1 is not the F1), a "
    "different decision threshold.",
    "The number training logged is the one it selected and stopped by, and the one in the dashboards. When it "
    "is not the metric of the validation set, the checkpoint may have been kept for a number nobody can "
    "reproduce. Severity is error when the run's selected_by is the mismatched metric, warning otherwise.",
    "A metric deliberately configured otherwise (a macro average, a tuned threshold, a weighted metric) under a "
    "plain name; validation predictions recorded from another loader or precision than the one logged.",
    "Compute the metric over the whole epoch (torchmetrics objects logged with self.log(metric_object), "
    "compute_metrics over the gathered predictions), drop the sampler's padding (gather by index, or "
    "drop_last/ an evaluation sampler without padding), and select with `ckptaudit pick` on the re-scored metric.",
)

_VAL = re.compile(r"^(val|valid|validation|eval|dev)[_/.-]", re.IGNORECASE)
_SUFFIX = re.compile(r"(_epoch|/dataloader_idx_\d+)$")
#: logged base name -> (built-in metric, tasks it is unambiguous for)
_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{n: ("accuracy", ("binary", "multiclass")) for n in ("acc", "accuracy", "binary_accuracy", "categorical_accuracy")},
    "sparse_categorical_accuracy": ("accuracy", ("binary", "multiclass")),
    **{n: ("f1", ("binary",)) for n in ("f1", "f1_score", "binary_f1", "f1score")},
    **{n: ("precision", ("binary",)) for n in ("precision", "binary_precision")},
    **{n: ("recall", ("binary",)) for n in ("recall", "binary_recall")},
    **{n: ("roc_auc", ("binary",)) for n in ("auc", "roc_auc", "auroc", "binary_auroc")},
    **{n: ("mse", ("regression",)) for n in ("mse", "mean_squared_error")},
    **{n: ("mae", ("regression",)) for n in ("mae", "mean_absolute_error")},
    **{n: ("rmse", ("regression",)) for n in ("rmse", "root_mean_squared_error")},
}
_BATCHES = (8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256, 500, 512, 1000, 1024)
_MAX_DUPLICATES = 8


def logged_metric(run: Run, key: str) -> str | None:
    """The built-in metric a logged validation key names unambiguously for this run's task, else None."""
    bare = _SUFFIX.sub("", key)
    if not _VAL.match(bare):
        return None
    found = _NAMES.get(_VAL.sub("", bare).lower())
    return found[0] if found is not None and run.task in found[1] else None


def tolerance(metric: str, value: float) -> float:
    """How far a logged value may sit from the re-scored one and still be the same number
    (float32 logging, rounding to 4 digits; AUC on a threshold grid)."""
    if metric == "roc_auc":
        return 5e-3
    return 1e-4 + 1e-4 * abs(value)


def rescore_logged(run: Run, ckpt: Checkpoint, prep: Prepared) -> dict[str, dict[str, Any]]:
    """Each logged validation metric of ``ckpt`` that has a re-scored counterpart: logged,
    re-scored and, where they disagree, the likely causes (O(rows) per metric; the cause
    search only on a disagreement)."""
    from ...metrics import kernels
    from ...metrics.spec import parse_metric

    out: dict[str, dict[str, Any]] = {}
    for key, logged in ckpt.logged.items():
        metric = logged_metric(run, key)
        if metric is None or not math.isfinite(logged):
            continue
        if metric == "roc_auc" and prep.proba is None and prep.logit is None:
            continue
        value = float(kernels.KERNELS[metric](prep, parse_metric(metric)))
        if not math.isfinite(value):
            continue
        entry: dict[str, Any] = {"metric": metric, "logged": logged, "rescored": value}
        if abs(logged - value) > tolerance(metric, value):
            entry["causes"] = causes(prep, metric, logged)
        out[key] = entry
    return out


def causes(prep: Prepared, metric: str, logged: float) -> list[dict[str, Any]]:
    """The explanations that reproduce ``logged`` from these predictions, most specific first."""
    found: list[dict[str, Any]] = []
    tol = tolerance(metric, logged)
    if prep.task in ("binary", "multiclass") and metric != "roc_auc":
        dup = _duplicates(prep, metric, logged, tol)
        if dup is not None:
            found.append(dup)
    batch = _batch_average(prep, metric, logged, tol)
    if batch is not None:
        found.append(batch)
    if prep.task == "binary" and metric in ("accuracy", "f1", "precision", "recall") and prep.hard is None:
        threshold = _threshold(prep, metric, logged, tol)
        if threshold is not None:
            found.append(threshold)
    return found


def _from_cms(prep: Prepared, metric: str, cms: np.ndarray) -> np.ndarray:
    from ...metrics import kernels
    from ...metrics.spec import parse_metric

    return kernels.from_confusions(cms, parse_metric(metric), prep.task, prep.n_classes)


def _duplicates(prep: Prepared, metric: str, logged: float, tol: float) -> dict[str, Any] | None:
    """The fewest rows counted twice (up to 8: a sampler pads fewer than the world size)
    whose confusion reproduces ``logged``."""
    from ...metrics import kernels

    cm = kernels.confusion(prep, None)
    cells = [(i, j) for i in range(cm.shape[0]) for j in range(cm.shape[1]) if cm[i, j] > 0]
    if metric != "accuracy" and len(cells) > 4:
        return None  # multiclass F1 & co are not checked (ambiguous averaging)
    for k in range(1, _MAX_DUPLICATES + 1):
        if metric == "accuracy":
            # only the number of correct repeats matters: c of the k repeated rows were right
            correct, n = float(np.trace(cm)), float(cm.sum())
            hits = [c for c in range(k + 1) if abs((correct + c) / (n + k) - logged) <= tol]
            if hits:
                return {"cause": "duplicated rows", "rows": k, "detail": f"{k} row(s) counted twice reproduce the logged value"}
            continue
        combos = list(combinations_with_replacement(range(len(cells)), k))
        cms = np.repeat(cm[None], len(combos), axis=0)
        for row, combo in enumerate(combos):
            for c in combo:
                cms[row][cells[c]] += 1
        values = _from_cms(prep, metric, cms)
        if np.any(np.abs(values - logged) <= tol):
            return {"cause": "duplicated rows", "rows": k, "detail": f"{k} row(s) counted twice reproduce the logged value"}
    return None


def _slice(prep: Prepared, start: int, stop: int) -> Prepared:
    from ...metrics.prepared import Prepared as P

    cut = slice(start, stop)
    proba = prep.proba if prep.logit is None else None
    return P(
        prep.task,
        prep.y[cut],
        None if proba is None else proba[cut],
        None if prep.hard is None else prep.hard[cut],
        prep.n_classes,
        logit=None if prep.logit is None else prep.logit[cut],
        eps=prep.eps,
        to_proba=prep.to_proba,
    )


def _batch_average(prep: Prepared, metric: str, logged: float, tol: float) -> dict[str, Any] | None:
    """A batch size whose per-batch values, averaged in the recorded row order (plainly, or
    weighted by batch size as Lightning's ``self.log`` does), give ``logged``."""
    from ...metrics import kernels
    from ...metrics.spec import parse_metric

    n = len(prep.y)
    spec = parse_metric(metric)
    for size in _BATCHES:
        if size >= n:
            break
        values, weights = [], []
        for start in range(0, n, size):
            part = _slice(prep, start, min(n, start + size))
            with np.errstate(all="ignore"):
                value = float(kernels.KERNELS[metric](part, spec))
            values.append(value if math.isfinite(value) else 0.0)  # torchmetrics' zero_division=0
            weights.append(min(n, start + size) - start)
        for how, mean in (
            ("mean", float(np.mean(values))),
            ("weighted by batch size", float(np.average(values, weights=weights))),
        ):
            if abs(mean - logged) <= tol:
                return {
                    "cause": "batch-averaged metric",
                    "batch_size": size,
                    "detail": f"the {how} of per-batch {metric} over batches of {size} rows reproduces the logged value",
                }
    return None


#: thresholds training code uses by habit, on the probability scale; sigmoid(0.5) is the
#: threshold 0.5 applied to logits (a classic slip), 0.5 itself the run's own
_THRESHOLDS = (0.3, 0.4, 0.45, 0.55, 0.6, 1 / (1 + math.exp(-0.5)), 0.7, 0.75, 0.8, 0.9, 0.95, 0.2, 0.25, 0.1, 0.05)


def _threshold(prep: Prepared, metric: str, logged: float, tol: float) -> dict[str, Any] | None:
    """A habitual decision threshold (:data:`_THRESHOLDS`) at which ``metric`` is ``logged``.

    Only habitual ones: with every threshold allowed, almost any value of a count metric is
    reached by some cut, which would explain nothing."""
    pos = prep.y.view(bool)
    for t in _THRESHOLDS:
        if prep.logit is not None:
            pred = prep.logit > math.log(t / (1 - t))
        else:
            assert prep.proba is not None
            pred = prep.proba > t
        tp = int(np.count_nonzero(pos & pred))
        fp = int(np.count_nonzero(pred)) - tp
        fn = int(np.count_nonzero(pos)) - tp
        cm = np.array([[[len(pos) - tp - fp - fn, fp], [fn, tp]]])
        if abs(float(_from_cms(prep, metric, cm)[0]) - logged) <= tol:
            logits = " (0.5 applied to logits)" if abs(t - 1 / (1 + math.exp(-0.5))) < 1e-12 else ""
            return {
                "cause": "different threshold",
                "threshold": _r(t),
                "detail": f"predicting positive from probability {t:.4g}{logits} reproduces the logged value",
            }
    return None


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    from ...metrics.spec import base_name

    first: dict[str, tuple[Checkpoint, dict[str, Any]]] = {}
    count: dict[str, int] = {}
    worst: dict[str, float] = {}
    for st in ra.stats:
        for key, entry in (st.logged_rescored or {}).items():
            if "causes" not in entry:
                continue
            first.setdefault(key, (st.checkpoint, entry))
            count[key] = count.get(key, 0) + 1
            worst[key] = max(worst.get(key, 0.0), abs(entry["logged"] - entry["rescored"]))
    checked = sum(1 for st in ra.stats if st.logged_rescored)
    selected = ra.run.selected_by.metric if ra.run.selected_by is not None else None
    for key, (ckpt, entry) in first.items():
        severity = "error" if selected is not None and (selected == key or base_name(selected) == base_name(key)) else "warning"
        named = [c["cause"] for c in entry["causes"]]
        why = f"; reproduced by: {'; '.join(c['detail'] for c in entry['causes'])}" if named else "; no known cause reproduces it"
        yield Finding(
            "logged-metric-mismatch",
            severity,
            ra.run.name,
            ckpt.name,
            f"training logged {key}={entry['logged']:.6g} at epoch {ckpt.epoch} but the recorded predictions score "
            f"{entry['metric']}={entry['rescored']:.6g} ({count[key]} of {checked} checkpoint(s) disagree){why}",
            {
                "logged_name": key,
                "metric": entry["metric"],
                "logged": _r(entry["logged"], 6),
                "rescored": _r(entry["rescored"], 6),
                "max_difference": _r(worst[key], 6),
                "checkpoints": count[key],
                "likely_causes": named,
                "causes": entry["causes"],
                "selected_by": selected,
            },
        )


RULE = Rule(INFO, detect, order=130)
