"""``rank --by group``: every checkpoint's metric on each slice, with intervals.

For one metric ``M`` and each run, every group of the run's group column is scored as
``M:group=NAME`` and the worst as ``worst_group(M)``, each through the selection
statistics (:func:`ckptaudit.stats.selection.evaluate_selection`: per-checkpoint 95%
intervals, the checkpoints that cannot be told apart from the slice's best, resampling
stratified by group). This module only gathers those results into rows
(:class:`SliceRow`); it computes no statistic of its own. Each group is one pass over the
run's prediction files (G + 1 passes for G groups).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MetricError, RunFormatError
from .metrics.spec import MetricSpec
from .store.reader import Run, read_predictions

WORST = "(worst)"


@dataclass(frozen=True)
class SliceRow:
    """One checkpoint on one slice (``group`` is ``(worst)`` for the worst-group row)."""

    run: str
    checkpoint: str
    epoch: int
    group: str
    rows: int | None
    value: float | None
    interval: tuple[float, float] | None
    tied_best: bool | None

    def as_dict(self) -> dict[str, object]:
        """JSON shape: run, checkpoint, epoch, group, rows, value, ci95, tied_best."""
        return {
            "run": self.run,
            "checkpoint": self.checkpoint,
            "epoch": self.epoch,
            "group": self.group,
            "rows": self.rows,
            "value": self.value,
            "ci95": None if self.interval is None else list(self.interval),
            "tied_best": self.tied_best,
        }


def run_groups(run: Run, column: str | None = None) -> tuple[str, tuple[str, ...], tuple[int, ...]]:
    """The group column a grouped metric reads in ``run`` (its first readable val.npz):
    its key, group names and sizes. Raises :class:`MetricError` when it has none."""
    from .store.groups import group_codes, pick_column

    for ckpt in run.checkpoints:
        if not ckpt.has_split("val"):
            continue
        try:
            preds = read_predictions(run, ckpt, "val")
        except RunFormatError:
            continue
        key, values = pick_column(preds.groups, column, run.name)
        codes, names = group_codes(values)
        return key, names, tuple(int(c) for c in np.bincount(codes, minlength=len(names)))
    raise MetricError("no readable val.npz to read the groups from", run.name)


def group_spec(spec: MetricSpec, name: str | None) -> MetricSpec:
    """``spec`` (bound to a run) on one group (``name``), or its worst group (None)."""
    if name is None:
        return replace(spec, text=f"worst_group({spec.text})", group_agg="worst", group_name=None)
    return replace(spec, text=f"{spec.text}:group={name}", group_agg=None, group_name=name)


def slice_rows(run: Run, spec: MetricSpec, *, resamples: int = 1000, seed: int = 0) -> list[SliceRow]:
    """Every checkpoint of ``run`` on each group and on the worst group (``spec`` bound to
    the run, not grouped itself; ``spec.group_column`` picks the column)."""
    from .stats.selection import evaluate_selection

    _, names, sizes = run_groups(run, spec.group_column)
    out: list[SliceRow] = []
    for name, size in [*zip(names, sizes, strict=True), (None, None)]:
        sel = evaluate_selection(run, group_spec(spec, name), resamples=resamples, seed=seed)
        for entry in sel.checkpoints:
            out.append(
                SliceRow(
                    run.name,
                    entry.checkpoint,
                    entry.epoch,
                    WORST if name is None else name,
                    size,
                    entry.value,
                    entry.interval,
                    entry.tied_best,
                )
            )
    order = {c.name: i for i, c in enumerate(run.checkpoints)}
    groups = {g: i for i, g in enumerate([*names, WORST])}
    out.sort(key=lambda r: (order.get(r.checkpoint, 0), groups[r.group]))
    return out


def rank_by_group(
    paths: Sequence[str | Path], metric: str, *, mode: str | None = None, resamples: int = 1000, seed: int = 0
) -> list[SliceRow]:
    """:func:`slice_rows` of every run under ``paths`` for one metric (``rank --by group``)."""
    from .metrics.evaluation import RunScorer, parse_metrics
    from .store.reader import discover

    runs = discover(paths)
    spec = parse_metrics([metric], runs, mode)[0]
    if spec.group_agg is not None or spec.group_name is not None:
        raise MetricError(f"rank --by group takes the plain metric (not {spec.text!r}); it adds each group and the worst")
    if spec.source != "builtin":
        raise MetricError(f"rank --by group needs a built-in metric computed from predictions, not {spec.text!r}")
    rows: list[SliceRow] = []
    for run in runs:
        rows += slice_rows(run, RunScorer(run, [spec]).specs[0], resamples=resamples, seed=seed)
    return rows


def slice_document(rows: Sequence[SliceRow], metric: str) -> Any:
    """The :class:`~ckptaudit.render.Document` of ``rank --by group``."""
    from .render import Document

    many = len({r.run for r in rows}) > 1
    columns = (["run"] if many else []) + ["checkpoint", "epoch", "group", "rows", metric, "ci95", "tied best"]
    table: list[list[object]] = []
    for r in rows:
        ci = f"[{r.interval[0]:.4f}, {r.interval[1]:.4f}]" if r.interval else None
        tied = None if r.tied_best is None else ("yes" if r.tied_best else "no")
        lead: list[object] = [r.run] if many else []
        table.append(lead + [r.checkpoint, r.epoch, r.group, r.rows, r.value, ci, tied])
    footer = [
        f"{metric} on each group's rows; {WORST} is worst_group({metric}); 'tied best': cannot be told apart from "
        "the best checkpoint on that slice (95% model confidence set, resampling stratified by group)"
    ]
    return Document(
        title=f"ckptaudit rank --by group: {metric}",
        columns=columns,
        rows=table,
        records=[r.as_dict() for r in rows],
        footer=footer,
    )
