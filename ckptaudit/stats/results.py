"""The selection statistics' results: plain frozen data with ``as_dict`` for JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LEVEL = 0.95
METHOD = "model confidence set (Hansen, Lunde & Nason 2011, range statistic, step-down), 95%"
CORRECTION = "bootstrap bias-corrected selection (Tsamardinos et al. 2018): best on in-bag rows, scored out-of-bag"


@dataclass(frozen=True)
class CheckpointSelection:
    """One checkpoint's place in the selection: value, 95% interval, and whether it
    cannot be told apart from the best (``tied_best``; None when not evaluated).
    ``mcs_pvalue``: the model-confidence-set p-value (members have p > 0.05)."""

    checkpoint: str
    epoch: int
    value: float | None
    interval: tuple[float, float] | None
    tied_best: bool | None
    mcs_pvalue: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of a checkpoint entry."""
        return {
            "checkpoint": self.checkpoint,
            "epoch": self.epoch,
            "value": self.value,
            "ci95": None if self.interval is None else list(self.interval),
            "tied_best": self.tied_best,
            "mcs_pvalue": self.mcs_pvalue,
        }


@dataclass(frozen=True)
class WinnerEstimate:
    """The selected checkpoint's raw validation value and what to expect on new data.

    ``optimism`` is oriented: positive when the raw value looks better than expected
    (raw - expected for metrics to maximise, expected - raw for losses)."""

    checkpoint: str
    raw: float
    expected: float
    interval: tuple[float, float]
    optimism: float
    #: resamples left out because their in-bag or out-of-bag rows had no row of the
    #: metric's class (recall of no positive is undefined, not 0)
    skipped_draws: int = 0
    #: rows of the metric's class (binary: positives) in the validation set, where it has one
    positives: int | None = None
    #: True when ``positives`` is below :data:`MIN_POSITIVES`: the estimate is then not
    #: calibrated (a view should say "too few positives", with ``positives_needed``)
    too_few_positives: bool = False
    positives_needed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: checkpoint, raw, expected_on_new_data, ci95, optimism, and the
        positives fields."""
        return {
            "checkpoint": self.checkpoint,
            "raw": self.raw,
            "expected_on_new_data": self.expected,
            "ci95": list(self.interval),
            "optimism": self.optimism,
            "skipped_draws": self.skipped_draws,
            "positives": self.positives,
            "too_few_positives": self.too_few_positives,
            "positives_needed": self.positives_needed,
        }


@dataclass(frozen=True)
class RunSelection:
    """Selection statistics of one run under one metric (plain data; ``as_dict`` for JSON).

    ``tied_best`` names the checkpoints that cannot be told apart from the best (the
    winner first, then epoch order); empty when unavailable (``note`` says why).
    """

    run: str
    metric: str
    maximize: bool
    rows: int
    resamples: int
    seed: int
    winner: str | None
    estimate: WinnerEstimate | None
    checkpoints: tuple[CheckpointSelection, ...]
    tied_best: tuple[str, ...]
    note: str | None = None
    method: str = METHOD
    correction: str = CORRECTION
    level: float = LEVEL
    #: the smallest gap to the best (in the metric's units) that the confidence set would
    #: have told apart at this level: "cannot be told apart" means "differs by less than
    #: about this much, or not at all", not "equal" (None when not computed)
    detectable_difference: float | None = None
    _index: dict[str, CheckpointSelection] = field(default_factory=dict, repr=False, compare=False)

    @property
    def available(self) -> bool:
        """Whether the bootstrap statistics were computed."""
        return self.estimate is not None

    def entry(self, name: str) -> CheckpointSelection | None:
        """The entry of checkpoint ``name``."""
        if not self._index:
            self._index.update({c.checkpoint: c for c in self.checkpoints})
        return self._index.get(name)

    def is_tied_best(self, name: str) -> bool:
        """True when ``name`` cannot be told apart from the best."""
        return name in self.tied_best

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of the whole selection."""
        return {
            "run": self.run,
            "metric": self.metric,
            "rows": self.rows,
            "resamples": self.resamples,
            "seed": self.seed,
            "level": self.level,
            "winner": self.winner,
            "estimate": None if self.estimate is None else self.estimate.as_dict(),
            "tied_best": list(self.tied_best),
            "checkpoints": [c.as_dict() for c in self.checkpoints],
            "method": self.method,
            "correction": self.correction,
            "note": self.note,
            "detectable_difference": self.detectable_difference,
        }
