"""Is the metric still improving at the last checkpoint? A trend test over validation rows.

Over the last ``window`` checkpoints (all with per-row data, ending at the run's last), the
least-squares slope of the metric against the epoch, oriented so that positive is better.
The rows are the independent units (the checkpoints are scored on the same rows, so their
values are correlated and a slope t-test over checkpoints would be wrong), so the slope is
bootstrapped over rows on the *same* resamples as the verdict's selection statistics (the
run's per-row data, seed and draws: :func:`ckptaudit.stats.selection._resampled`). The test
is one-sided at level ``alpha``: "still improving" when fewer than ``alpha`` of the resampled
slopes are <= 0 (the percentile bootstrap's lower bound above 0). Its false-alarm rate on
runs whose true metric is flat over the window is measured by simulation
(bench/simulate_stopped_too_early.py; tests/test_stopped_too_early.py, slow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .intervals import event_class
from .quantiles import percentiles
from .rows import RunEvaluation

WINDOW = 5
ALPHA = 0.05


@dataclass(frozen=True)
class Trend:
    """The slope over the last checkpoints (per epoch, positive: improving) and its test."""

    slope: float
    interval: tuple[float, float]  #: 90% two-sided (its lower end is the one-sided 95% bound)
    p_value: float  #: share of resampled slopes <= 0
    first_epoch: int
    last_epoch: int
    checkpoints: int

    @property
    def improving(self) -> bool:
        """Still improving at level :data:`ALPHA`."""
        return self.p_value < ALPHA


def trend_at_end(evaluation: RunEvaluation, *, resamples: int, seed: int, window: int = WINDOW) -> Trend | None:
    """The trend of the last ``window`` checkpoints (None: fewer than 3 with per-row data
    at the end of the run, or no resample defined)."""
    from .gaussian import gaussian_ok
    from .selection import _one_blas_thread, _resampled
    from .streamed import column_values, streams

    rows = evaluation.rows
    n = len(evaluation.checkpoints)
    if rows is None or not evaluation.scored or evaluation.scored[-1] != n - 1:
        return None
    scored = list(evaluation.scored)
    tail: list[int] = []  # local columns of the last checkpoints, consecutive in the run
    for j in range(len(scored) - 1, -1, -1):
        if scored[j] != n - 1 - len(tail) or len(tail) == window:
            break
        tail.append(j)
    tail.reverse()
    if len(tail) < 3:
        return None
    epochs = np.array([evaluation.checkpoints[scored[j]].epoch for j in tail], dtype=np.float64)
    if np.ptp(epochs) == 0:
        return None
    sign = 1.0 if evaluation.spec.maximize else -1.0
    rng = np.random.default_rng(seed)
    task = evaluation.run.task
    event = event_class(evaluation.spec, task, rows.kind)
    with _one_blas_thread():
        exact = rows.kind == "confusion" and not gaussian_ok(rows, resamples)
        if exact or streams(rows, resamples):
            # NOTE: only the last checkpoints' values, under the same weights, each as the
            # selection computes it (issue 21: 20,000 checkpoints held 320 MB); exact
            # counts are cheap to compute again, other forms of a run that is not streamed
            # read the values the selection remembered (below)
            state = rng.bit_generator.state
            v_in, _ = column_values(rows, np.asarray(tail), evaluation.spec, task, resamples, rng, state, event)
            cols = list(range(len(tail)))
        else:
            v_in, _ = _resampled(rows, evaluation.spec, task, resamples, rng, event)
            cols = tail
    y = sign * v_in[:, cols]
    y = y[np.isfinite(y).all(axis=1)]
    if not y.size:
        return None
    x = epochs - epochs.mean()
    slopes = (y @ x) / float(x @ x)
    point_values = np.array([evaluation.values[scored[j]] for j in tail], dtype=np.float64)
    slope = float((sign * point_values) @ x / float(x @ x))
    low, high = percentiles(slopes, [5.0, 95.0])
    return Trend(slope, (float(low), float(high)), float(np.mean(slopes <= 0)), int(epochs[0]), int(epochs[-1]), len(tail))
