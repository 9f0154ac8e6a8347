"""Churn: what a candidate checkpoint breaks that the deployed (baseline) model got right.

:func:`compare` reads the candidate's and the baseline's validation predictions on the same
rows and counts, overall and per slice (the group column, docs/format.md):

* **negative flips**: rows the baseline classified correctly and the candidate does not
  (positive flips: the reverse); the negative-flip rate is their share of the rows
  (Yan et al. 2021, "Positive-congruent training");
* **McNemar's exact test** on the disagreements: under "both models are equally accurate"
  each discordant row is a negative or a positive flip with probability 1/2; the two-sided
  p-value is that of the binomial count of negative flips;
* each slice's accuracy under both models and its regression (baseline minus candidate).

The baseline is given as a checkpoint folder (of the same run or another run: read under
its own run.json), a run folder (its chosen checkpoint), or a bare ``val.npz`` (read under
the candidate's run.json); it must hold the same rows (targets, and ids where both have
them), else :class:`~ckptaudit.errors.UsageError` (exit 2). Correctness is the hard label at
the policy threshold (multilabel: every label of the row right); regression runs have no
flips. The gate rule ``churn`` (:mod:`ckptaudit.gate.rules.churn`) judges this against the
policy keys ``max_negative_flip_rate`` and ``max_slice_regression``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RunFormatError, UsageError
from .store.reader import Checkpoint, Predictions, Run

#: how many negative flips (row indices or ids) the result lists
SHOWN_FLIPS = 50


@dataclass(frozen=True)
class SliceChurn:
    """Flips and accuracies on one slice (``group`` None: all rows)."""

    group: str | None
    rows: int
    negative_flips: int
    positive_flips: int
    baseline_accuracy: float
    candidate_accuracy: float
    mcnemar_p: float

    @property
    def negative_flip_rate(self) -> float:
        """Share of the slice's rows the baseline got right and the candidate gets wrong."""
        return self.negative_flips / self.rows if self.rows else 0.0

    @property
    def regression(self) -> float:
        """Baseline accuracy minus candidate accuracy (positive: the candidate is worse)."""
        return self.baseline_accuracy - self.candidate_accuracy

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of one slice's churn."""
        return {
            "group": self.group,
            "rows": self.rows,
            "negative_flips": self.negative_flips,
            "positive_flips": self.positive_flips,
            "negative_flip_rate": self.negative_flip_rate,
            "baseline_accuracy": self.baseline_accuracy,
            "candidate_accuracy": self.candidate_accuracy,
            "regression": self.regression,
            "mcnemar_p": self.mcnemar_p,
        }


@dataclass(frozen=True)
class Churn:
    """The candidate against the baseline: overall, per slice, and the first flips."""

    candidate: str
    baseline: str
    overall: SliceChurn
    slices: tuple[SliceChurn, ...]
    group_column: str | None
    flips: tuple[str, ...]  #: the first negative flips: row ids where the file has them, else row indices

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: candidate, baseline, overall, slices, group_column, flips."""
        return {
            "candidate": self.candidate,
            "baseline": self.baseline,
            "overall": self.overall.as_dict(),
            "slices": [s.as_dict() for s in self.slices],
            "group_column": self.group_column,
            "flips": list(self.flips),
        }


def mcnemar_p(negative: int, positive: int) -> float:
    """Two-sided exact McNemar p-value of ``negative`` vs ``positive`` discordant rows."""
    n = negative + positive
    if n == 0:
        return 1.0
    k = min(negative, positive)
    # NOTE: the binomial(n, 1/2) lower tail in log space, so large n does not underflow
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return min(1.0, 2 * tail)


def _slice(group: str | None, base_ok: np.ndarray, cand_ok: np.ndarray) -> SliceChurn:
    neg = int(np.count_nonzero(base_ok & ~cand_ok))
    pos = int(np.count_nonzero(~base_ok & cand_ok))
    n = int(base_ok.shape[0])
    return SliceChurn(
        group,
        n,
        neg,
        pos,
        float(base_ok.mean()) if n else math.nan,
        float(cand_ok.mean()) if n else math.nan,
        mcnemar_p(neg, pos),
    )


def correct_rows(run: Run, preds: Predictions, threshold: float | None) -> np.ndarray:
    """Whether each row's hard prediction is right (multilabel: every label)."""
    from .metrics.evaluation import prepare_predictions

    if run.task == "regression":
        raise UsageError("check --baseline compares right and wrong answers; a regression run has none")
    if preds.output.dtype.kind == "f" and not np.isfinite(preds.output).all():
        raise RunFormatError("non-finite outputs (NaN/inf): the answers cannot be compared", preds.path)
    prep = prepare_predictions(run, preds)
    labels = np.asarray(prep.labels(threshold))
    y = np.asarray(prep.y)
    if labels.ndim == 2:
        return np.all(labels.astype(np.int8) == y.astype(np.int8), axis=1)
    return labels.astype(np.int64) == y.astype(np.int64)


def read_baseline(path: str | Path, run: Run) -> tuple[Run, Predictions, str]:
    """The baseline's run (for reading its outputs), predictions and a name for it."""
    from .store.discovery import read_checkpoint, read_run
    from .store.mirror import localize
    from .store.reader import CHECKPOINTS_DIR, RUN_FILE, read_predictions
    from .store.remote import shown

    path = Path(localize(path))
    if path.is_file() and path.suffix == ".npz":
        ckpt = Checkpoint(path.parent, path.parent.name, 0, None, {})
        # NOTE: a bare val.npz is read under the candidate's run.json (same task and output)
        return run, read_predictions(run, ckpt, path.stem), shown(path)
    if (path / RUN_FILE).is_file():
        base_run = read_run(path)
        chosen = base_run.checkpoint(base_run.chosen) if base_run.chosen else None
        if chosen is None:
            raise UsageError("the baseline run names no chosen checkpoint: give its checkpoint folder", path)
        return base_run, read_predictions(base_run, chosen), shown(f"{path}/{CHECKPOINTS_DIR}/{chosen.name}")
    if path.is_dir() and path.parent.name == CHECKPOINTS_DIR and (path.parent.parent / RUN_FILE).is_file():
        base_run = read_run(path.parent.parent)
        return base_run, read_predictions(base_run, read_checkpoint(path)), shown(path)
    raise UsageError("--baseline must be a checkpoint folder, a run folder with a chosen checkpoint, or a val.npz", path)


def compare(
    run: Run, candidate: Checkpoint, baseline: str | Path, *, threshold: float | None = None, column: str | None = None
) -> Churn:
    """Churn of ``candidate`` (a checkpoint of ``run``) against ``baseline`` (see the module
    docstring); slices from the candidate's group column (``column``, default: the
    ``group`` column or the only one; none: overall only)."""
    from .store.groups import group_codes, pick_column
    from .store.reader import read_predictions

    cand = read_predictions(run, candidate)
    base_run, base, base_name = read_baseline(baseline, run)
    if base.target.shape != cand.target.shape or not np.array_equal(base.target, cand.target):
        raise UsageError(
            f"the baseline {base_name} was validated on other rows than {candidate.name} (targets differ): "
            "churn compares answers on the same rows"
        )
    if base.ids is not None and cand.ids is not None and not np.array_equal(base.ids, cand.ids):
        raise UsageError(f"the baseline {base_name} was validated on other rows than {candidate.name} (ids differ)")
    base_ok = correct_rows(base_run, base, threshold)
    cand_ok = correct_rows(run, cand, threshold)
    slices: list[SliceChurn] = []
    key = None
    groups = cand.groups or base.groups
    if groups:
        key, values = pick_column(groups, column, run.name)
        codes, names = group_codes(values)
        for g, name in enumerate(names):
            rows = codes == g
            slices.append(_slice(name, base_ok[rows], cand_ok[rows]))
    flipped = np.flatnonzero(base_ok & ~cand_ok)[:SHOWN_FLIPS]
    ids = cand.ids
    flips = tuple(str(ids[i].item()) if ids is not None else str(int(i)) for i in flipped)
    return Churn(candidate.name, base_name, _slice(None, base_ok, cand_ok), tuple(slices), key, flips)
