"""Static figures of the curves with matplotlib (the ``ckptaudit[plot]`` extra).

:func:`plot_report` draws a :class:`~ckptaudit.reporting.Report` as one matplotlib figure:
one panel per metric (and per logged quantity, train and validation together), one line per
run, the chosen checkpoint (ring) and the winner under the first metric (diamond) marked, and
for a single run the checkpoints that cannot be told apart from the best shaded. It uses a
bare :class:`matplotlib.figure.Figure` (no pyplot, no global state, no GUI backend), which
notebooks display and :func:`save_figure` writes as PNG, SVG or PDF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .reporting import Report, RunReport, build_report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = {
    "val": "#2563eb",
    "train": "#64748b",
    "chosen": "#ea580c",
    "winner": "#16a34a",
    "tied": "#16a34a",
    "corrected": "#7c3aed",
}
SUFFIXES = (".png", ".svg", ".pdf")


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'ckptaudit[plot]'") from None
    return Figure


def _panel(chart: Any) -> str:
    """The panel a chart is drawn in: one per metric (a sweep mixing tasks ranks one run by
    recall and another by mse: never two metrics on one axis), one per logged quantity."""
    return f"metric:{chart.metric}" if chart.metric is not None else chart.key


def _text(value: object) -> str:
    """A name or title as matplotlib shows it literally: ``$`` escaped, so that a run folder
    named ``run$\\frac{$`` is not parsed as mathtext (which fails, or draws something
    else); drawn with usetex off (see :func:`plot_report`), nothing else is special."""
    return str(value).replace("$", "\\$")


def _panels(report: Report) -> list[tuple[str, str]]:
    """(panel, title) of every panel, in the order of the first run that has it."""
    seen: dict[str, str] = {}
    for run in report.runs:
        for chart in run.charts:
            seen.setdefault(_panel(chart), chart.title)
    return list(seen.items())


def _shade_tied(ax: Any, run: RunReport) -> None:
    tied = set(run.selection.tied_best or ())
    xs = run.x
    for i, c in enumerate(run.checkpoints):
        if c.name not in tied:
            continue
        left = (xs[i] - xs[i - 1]) / 2 if i > 0 else (xs[1] - xs[0]) / 2 if len(xs) > 1 else 0.5
        right = (xs[i + 1] - xs[i]) / 2 if i + 1 < len(xs) else left
        ax.axvspan(xs[i] - left, xs[i] + right, color=COLORS["tied"], alpha=0.12, lw=0)


def plot_report(report: Report, *, width: float | None = None, height: float | None = None) -> Figure:
    """The curves of ``report`` as a figure (``width``/``height`` in inches)."""
    figure_class = _figure_class()
    import matplotlib

    # NOTE: a user's matplotlibrc may turn usetex on: names would then go through LaTeX,
    # where %, &, # and _ break the figure. Each text keeps the setting it was made with.
    with matplotlib.rc_context({"text.usetex": False}):
        return _draw(figure_class, report, width, height)


def _draw(figure_class: Any, report: Report, width: float | None, height: float | None) -> Figure:
    from matplotlib.ticker import MaxNLocator

    panels = _panels(report)
    if not panels:
        raise UsageError("nothing to plot: no metric values and no logged metrics")
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig = figure_class(figsize=(width or 6.0 * ncols, height or 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    single = len(report.runs) == 1
    palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"]
    for ax, (key, title) in zip(axes, panels, strict=False):
        for r, run in enumerate(report.runs):
            chart = next((c for c in run.charts if _panel(c) == key), None)
            if chart is None:
                continue
            color = COLORS["val"] if single else palette[r % len(palette)]
            if single and chart.primary:
                _shade_tied(ax, run)
            for s in chart.series:
                xs = [x for x, v in zip(run.x, s.values, strict=True) if v is not None]
                ys = [v for v in s.values if v is not None]
                # NOTE: in a sweep the legend names runs; a dashed line of the same colour is its train split.
                label = s.label if single else (run.name if s.split == "val" or len(chart.series) == 1 else None)
                label = None if label is None else _text(label)
                style = {"ls": "--", "lw": 1.4} if s.split == "train" else {"lw": 1.8}
                line_color = COLORS["train"] if single and s.split == "train" else color
                ax.plot(xs, ys, color=line_color, marker="o" if len(xs) <= 40 else None, ms=3, label=label, **style)
            val = next((s for s in chart.series if s.split == "val"), chart.series[0])
            corrected = run.selection.corrected
            w = run.index_of(run.winner)
            if chart.primary and corrected is not None and w is not None:
                ax.errorbar(
                    run.x[w],
                    corrected.value,
                    yerr=[[corrected.value - corrected.low], [corrected.high - corrected.value]],
                    fmt="o",
                    color=COLORS["corrected"],
                    ms=5,
                    capsize=3,
                    zorder=7,
                    label="expected on new data" if single else None,
                )
            for kind, name in (("chosen", run.chosen), ("winner", run.winner)):
                i = run.index_of(name)
                if i is None or val.values[i] is None:
                    continue
                edge = COLORS[kind] if single else color
                if kind == "chosen":
                    ax.plot(run.x[i], val.values[i], "o", ms=11, mfc="none", mec=edge, mew=2.2, zorder=5)
                else:
                    ax.plot(run.x[i], val.values[i], "D", ms=7, mfc=edge, mec="white", mew=1.2, zorder=6)
        maximize = next(
            (c.maximize for run in report.runs for c in run.charts if _panel(c) == key and c.maximize is not None), None
        )
        arrow = "" if maximize is None else " (higher is better)" if maximize else " (lower is better)"
        ax.set_title(_text(f"{title}{arrow}"), fontsize=10, loc="left")
        ax.set_xlabel(_text(report.runs[0].x_label))
        if all(float(x).is_integer() for run in report.runs for x in run.x):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, color="#e2e8f0", lw=0.8)
        ax.spines[["top", "right"]].set_visible(False)
        handles, labels = ax.get_legend_handles_labels()
        if handles and (len(handles) > 1 or not single):
            ax.legend(fontsize=8, frameon=False)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    firsts = {run.metrics[0] for run in report.runs if run.metrics}
    markers = "ring: chosen, diamond: best by " + (next(iter(firsts)) if len(firsts) == 1 else "each run's first metric")
    if not single:
        markers += "; dashed: train"
    if single and report.runs[0].selection.tied_best:
        markers += "; shaded: cannot be told apart from the best"
    fig.suptitle(
        _text(f"{report.runs[0].name if single else f'{len(report.runs)} runs'}: {markers}"), fontsize=9, color="#475569"
    )
    return fig


def plot_paths(
    paths: Sequence[str | Path],
    metrics: Sequence[str] = (),
    *,
    mode: str | None = None,
    width: float | None = None,
    height: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> Figure:
    """Gather the curves of the runs under ``paths`` and draw them (see :func:`plot_report`)."""
    _figure_class()  # fail early, before any scoring, when matplotlib is missing
    report = build_report(paths, metrics, mode=mode, resamples=resamples, seed=seed, diagnostics=False)
    return plot_report(report, width=width, height=height)


def save_figure(figure: Figure, path: str | Path, *, dpi: int = 100) -> None:
    """Write ``figure`` as PNG, SVG or PDF, chosen by the suffix of ``path``."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(f"unknown image type {path.suffix or '(none)'!r}: use {', '.join(SUFFIXES)}", path)
    figure.savefig(path, dpi=dpi, facecolor="white")
