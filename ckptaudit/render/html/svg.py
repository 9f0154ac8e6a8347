"""Hand-written SVG for the HTML report: line charts over epochs, ROC / precision-recall /
reliability charts, residual scatters and sparklines.

Why hand-written: the page must open offline as one file and stay small and fast at 500
checkpoints x 20 runs. One ``<path>`` per line (not one element per point) keeps a run of
500 checkpoints at a few kB per chart, the charts draw without any script (so screenshots,
printing and mail clients see them), and a few lines of inline JS add the hover tooltip by
looking up the nearest checkpoint in the run's data. No chart library to inline (those weigh
0.5-3 MB), nothing to download.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from html import escape
from typing import Any

import numpy as np

from ...reporting import Chart, Curve, Reliability, Residuals, RunReport

WIDTH, HEIGHT = 560, 230
LEFT, RIGHT, TOP, BOTTOM = 54, 16, 16, 34
#: above this many checkpoints points are not drawn one by one (the line and hover remain)
MAX_DOTS = 60

COLORS = {"val": "#2563eb", "train": "#64748b", "chosen": "#ea580c", "winner": "#16a34a", "corrected": "#7c3aed"}


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (about ``count`` of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v < hi + step * 0.999:
        ticks.append(round(v, 12))
        v += step
    return ticks


def fmt(value: float | None, digits: int = 4) -> str:
    """A value as the page shows it."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if abs(value) >= 1e4 or (0 < abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{value:.{digits}f}" else f"{value}"


def _tick_label(v: float, step: float) -> str:
    if abs(v) >= 1e4:
        return f"{v:.3g}"
    decimals = max(0, -math.floor(math.log10(step)) + (0 if (step / 10 ** math.floor(math.log10(step))) in (1, 2, 5) else 1))
    return f"{v:.{min(decimals, 6)}f}"


class Scale:
    """Linear map of a data interval onto a pixel interval."""

    def __init__(self, d0: float, d1: float, p0: float, p1: float) -> None:
        if d1 == d0:
            d0, d1 = d0 - 0.5, d1 + 0.5
        self.d0, self.d1, self.p0, self.p1 = d0, d1, p0, p1

    def __call__(self, v: float) -> float:
        return self.p0 + (v - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)

    def many(self, values: Sequence[float]) -> np.ndarray:
        """:meth:`__call__` of each value at once (the same float arithmetic, in the same order)."""
        return self.p0 + (np.asarray(values, dtype=np.float64) - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)


def _each_point(template: str, xs: Sequence[float], ys: Sequence[float], sx: Scale, sy: Scale) -> str:
    """``template`` (two ``%.1f``: x then y, in pixels) for each point, joined: one format
    over all the points instead of an f-string per point (a sweep's page draws a million;
    ``%.1f`` and ``:.1f`` round alike)."""
    n = len(xs)
    if n == 0:
        return ""
    flat = np.empty(2 * n, dtype=np.float64)
    flat[0::2] = sx.many(xs)
    flat[1::2] = sy.many(ys)
    return (template * n) % tuple(flat.tolist())


def _line(xs: Sequence[float], ys: Sequence[float], sx: Scale, sy: Scale) -> str:
    """One path through every point (none missing)."""
    return "M" + _each_point("L%.1f,%.1f", xs, ys, sx, sy)[1:] if len(xs) else ""


def _path(xs: Sequence[float], ys: Sequence[float | None], sx: Scale, sy: Scale) -> str:
    """One path for a line with gaps where values are missing."""
    parts: list[str] = []
    pen_down = False
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{sx(x):.1f},{sy(y):.1f}")
        pen_down = True
    return "".join(parts)


def _axes(sx: Scale, sy: Scale, xticks: list[float], yticks: list[float], x_label: str, width: int, height: int) -> list[str]:
    out = ['<g class="axis">']
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    for t in yticks:
        y = sy(t)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 3.5:.1f}" text-anchor="end">{_tick_label(t, ystep)}</text>')
    for t in xticks:
        x = sx(t)
        out.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{height - BOTTOM}" y2="{height - BOTTOM + 4}"/>')
        out.append(f'<text x="{x:.1f}" y="{height - BOTTOM + 15}" text-anchor="middle">{t:g}</text>')
    out.append(f'<line class="frame" x1="{LEFT}" x2="{width - RIGHT}" y1="{height - BOTTOM}" y2="{height - BOTTOM}"/>')
    out.append(f'<text class="xlabel" x="{width - RIGHT}" y="{height - 3}" text-anchor="end">{escape(x_label)}</text>')
    out.append("</g>")
    return out


def _x_ticks(xs: Sequence[float]) -> list[float]:
    lo, hi = min(xs), max(xs)
    ticks = [t for t in nice_ticks(lo, hi, 7) if lo - 1e-9 <= t <= hi + 1e-9]
    if all(float(x).is_integer() for x in xs):
        ticks = [t for t in ticks if float(t).is_integer()]
    return ticks or [lo]


def _bands(run: RunReport, sx: Scale, top: float, bottom: float) -> list[str]:
    """Shaded spans over the checkpoints that cannot be told apart from the best."""
    tied = run.selection.tied_best
    if not tied:
        return []
    members = [i for i, c in enumerate(run.checkpoints) if c.name in set(tied)]
    xs = run.x
    out = ['<g class="tied">']
    i = 0
    while i < len(members):
        j = i
        while j + 1 < len(members) and members[j + 1] == members[j] + 1:
            j += 1
        a, b = members[i], members[j]
        left = xs[a] - ((xs[a] - xs[a - 1]) / 2 if a > 0 else (xs[1] - xs[0]) / 2 if len(xs) > 1 else 0.5)
        right = xs[b] + ((xs[b + 1] - xs[b]) / 2 if b + 1 < len(xs) else (xs[-1] - xs[-2]) / 2 if len(xs) > 1 else 0.5)
        x0, x1 = max(sx(left), LEFT), min(sx(right), sx.p1)
        names = ", ".join(run.checkpoints[k].name for k in range(a, b + 1))
        out.append(
            f'<rect x="{x0:.1f}" y="{top:.1f}" width="{max(x1 - x0, 1):.1f}" height="{bottom - top:.1f}">'
            f"<title>cannot be told apart from the best: {escape(names)}</title></rect>"
        )
        i = j + 1
    out.append("</g>")
    return out


def _marker(kind: str, name: str, epoch: int, x: float, y: float, label: tuple[float, float, bool] | None) -> str:
    """A chosen (ring) or winner (diamond) marker; ``label`` is (dx, dy, anchored at its end) or None."""
    title = {"chosen": "chosen", "winner": "best"}[kind]
    shape = (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" class="ring"/>'
        if kind == "chosen"
        else f'<path d="M{x:.1f},{y - 6.5:.1f}L{x + 6.5:.1f},{y:.1f}L{x:.1f},{y + 6.5:.1f}L{x - 6.5:.1f},{y:.1f}Z" class="diamond"/>'
    )
    text = ""
    if label is not None:
        dx, dy, end = label
        anchor = ' text-anchor="end"' if end else ""
        text = f'<text x="{x + dx:.1f}" y="{y + dy:.1f}"{anchor}>{title}</text>'
    return (
        f'<g class="mark {kind}" data-checkpoint="{escape(name)}" data-epoch="{epoch}" data-x="{x:.1f}">'
        f"{shape}{text}<title>{title}: {escape(name)} (epoch {epoch})</title></g>"
    )


def _label_places(
    points: dict[str, tuple[float, float]], top: float, bottom: float, right: float
) -> dict[str, tuple[float, float, bool]]:
    """Where the "chosen" and "best" labels go: the winner's above its marker and the chosen's
    below, unless that leaves the plot; right of the marker, unless near the right edge; and
    on opposite sides (left and right) when the two markers are close."""
    places = {}
    for kind, (x, y) in points.items():
        dy = -9.0 if kind == "winner" else 17.0
        if y + dy > bottom - 2:
            dy = -9.0
        elif y + dy < top + 10:
            dy = 17.0
        end = x > right - 60
        places[kind] = (dy, end)
    if len(points) == 2:
        xc, xw = points["chosen"][0], points["winner"][0]
        if abs(xc - xw) < 60:
            # NOTE: close markers: the left one's label goes left, the right one's right.
            left_is_chosen = xc <= xw
            places["chosen"] = (places["chosen"][0], left_is_chosen)
            places["winner"] = (places["winner"][0], not left_is_chosen)
    return {k: (-9.0 if end else 9.0, dy, end) for k, (dy, end) in places.items()}


def _whiskers(run: RunReport, chart: Chart) -> list[tuple[str, int, tuple[float, float]]]:
    """95% intervals of the chosen and the winner under this chart's metric, when known."""
    row = next((d for d in run.decision if d.metric == chart.metric), None)
    if row is None:
        return []
    out = []
    for kind, name, iv in (("chosen", run.chosen, row.chosen_interval), ("winner", run.winner, row.winner_interval)):
        i = run.index_of(name)
        if i is not None and iv is not None and (kind == "chosen" or name != run.chosen):
            out.append((kind, i, iv))
    return out


def line_chart(run: RunReport, run_index: int, chart: Chart, width: int = WIDTH, height: int = HEIGHT) -> str:
    """A chart of one metric (or logged quantity) over the run's checkpoints, with the chosen
    checkpoint and the winner marked; on the primary chart also the tied-best set (shaded),
    the 95% intervals of the chosen and the winner, the best value as a reference line and,
    when available, the selection-corrected estimate."""
    xs = run.x
    values = [v for s in chart.series for v in s.values if v is not None]
    corrected = run.selection.corrected if chart.primary else None
    whiskers = _whiskers(run, chart) if chart.primary else []
    if not values:
        return f'<div class="chart empty">no values of {escape(chart.title)}</div>'
    if corrected is not None:
        values += [corrected.low, corrected.high]
    values += [v for _, _, iv in whiskers for v in iv]
    yticks = nice_ticks(min(values), max(values))
    bottom, right = height - BOTTOM, width - RIGHT
    sy = Scale(yticks[0], yticks[-1], bottom, TOP)
    xlo, xhi = min(xs), max(xs)
    pad = (xhi - xlo) * 0.02 or 0.5
    sx = Scale(xlo - pad, xhi + pad, LEFT, right)
    out = [
        f'<svg class="curve" viewBox="0 0 {width} {height}" role="img" data-run="{run_index}" data-chart="{escape(chart.key)}" '
        f'data-x0="{sx.d0:.6g}" data-x1="{sx.d1:.6g}" data-l="{LEFT}" data-r="{right}">',
        f"<title>{escape(chart.title)} over {escape(run.x_label)}s</title>",
    ]
    if chart.primary:
        out += _bands(run, sx, TOP, bottom)
    out += _axes(sx, sy, _x_ticks(xs), yticks, run.x_label, width, height)
    best_i = run.index_of(run.winner)
    if chart.primary and best_i is not None and chart.series[0].values[best_i] is not None:
        yb = sy(chart.series[0].values[best_i])  # type: ignore[arg-type]
        out.append(
            f'<g class="bestline"><line x1="{LEFT}" x2="{right}" y1="{yb:.1f}" y2="{yb:.1f}"/>'
            f'<text x="{LEFT + 4}" y="{yb - 4:.1f}">best {fmt(chart.series[0].values[best_i])}</text></g>'
        )
    for s in chart.series:
        d = _path(xs, s.values, sx, sy)
        if d:
            out.append(f'<path class="line {s.split}" d="{d}"><title>{escape(s.label)}</title></path>')
        if len(xs) <= MAX_DOTS:
            dots = "".join(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6"/>' for x, y in zip(xs, s.values, strict=True) if y is not None
            )
            out.append(f'<g class="dots {s.split}">{dots}</g>')
    for kind, i, (low, high) in whiskers:
        x = sx(xs[i])
        out.append(
            f'<g class="whisker {kind}"><line x1="{x:.1f}" x2="{x:.1f}" y1="{sy(low):.1f}" y2="{sy(high):.1f}"/>'
            f'<line x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{sy(low):.1f}" y2="{sy(low):.1f}"/>'
            f'<line x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{sy(high):.1f}" y2="{sy(high):.1f}"/>'
            f"<title>95% interval: [{fmt(low)}, {fmt(high)}]</title></g>"
        )
    if corrected is not None and best_i is not None:
        x = sx(xs[best_i]) - 12  # left of the winner, whose label sits on its right
        out.append(
            f'<g class="corrected"><line x1="{x:.1f}" x2="{x:.1f}" y1="{sy(corrected.low):.1f}" y2="{sy(corrected.high):.1f}"/>'
            f'<circle cx="{x:.1f}" cy="{sy(corrected.value):.1f}" r="4"/>'
            f"<title>expected on new data (corrected for selection): {fmt(corrected.value)} "
            f"[{fmt(corrected.low)}, {fmt(corrected.high)}]</title></g>"
        )
    # Markers sit on the validation line (or the first line that has a value there).
    points: dict[str, tuple[float, float]] = {}
    names: dict[str, tuple[str, int]] = {}
    for kind, name in (("chosen", run.chosen), ("winner", run.winner)):
        at = run.index_of(name)
        if at is None or name is None:
            continue
        y = next((s.values[at] for s in chart.series if s.split == "val" and s.values[at] is not None), None)
        if y is None:
            y = next((s.values[at] for s in chart.series if s.values[at] is not None), None)
        if y is not None:
            points[kind] = (sx(xs[at]), sy(y))
            names[kind] = (name, run.checkpoints[at].epoch)
    labels = _label_places(points, TOP, bottom, right) if chart.primary else {}
    for kind, (x, y) in points.items():
        out.append(_marker(kind, names[kind][0], names[kind][1], x, y, labels.get(kind)))
    out.append(
        f'<line class="cursor" x1="0" x2="0" y1="{TOP}" y2="{bottom}" visibility="hidden"/>'
        f'<rect class="hit" x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}"/>'
    )
    out.append("</svg>")
    return "".join(out)


def sparkline(run: RunReport, width: int = 140, height: int = 30) -> str:
    """A small line of the first metric with the chosen and best checkpoints dotted."""
    values = run.first_values()
    present = [v for v in values if v is not None]
    if not present:
        return ""
    step = max(1, len(values) // 120)
    keep = sorted(set(range(0, len(values), step)) | {len(values) - 1})
    sx = Scale(min(run.x), max(run.x), 3, width - 3)
    sy = Scale(min(present), max(present), height - 4, 4)
    d = _path([run.x[i] for i in keep], [values[i] for i in keep], sx, sy)
    dots = []
    for kind, name in (("chosen", run.chosen), ("winner", run.winner)):
        i = run.index_of(name)
        if i is not None and values[i] is not None:
            dots.append(f'<circle class="{kind}" cx="{sx(run.x[i]):.1f}" cy="{sy(values[i]):.1f}" r="3"/>')  # type: ignore[arg-type]
    return f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}"><path d="{d}"/>{"".join(dots)}</svg>'


def _square(title: str, x_label: str, y_label: str, body: list[str], size: int = 260) -> str:
    """A unit-square chart ([0, 1] on both axes) around ``body`` drawn by the caller."""
    w, h = size + 20, size
    out = [
        f'<svg class="diag" viewBox="0 0 {w} {h}" role="img"><title>{escape(title)}</title>',
        _unit_frame(size, x_label, y_label),
    ]
    out += body
    out.append("</svg>")
    return "".join(out)


@cache
def _unit_frame(size: int, x_label: str, y_label: str) -> str:
    """The axes and labels of :func:`_square`, the same for every ROC, precision-recall or
    reliability chart of a page (drawn once, not a thousand times for a sweep)."""
    w, h = size + 20, size
    sx, sy = unit_scales(size)
    ticks = [0, 0.25, 0.5, 0.75, 1.0]
    return "".join(_axes(sx, sy, ticks, ticks, x_label, w, h)) + (
        f'<text class="ylabel" transform="translate(11,{sy(0.5):.1f}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
    )


def unit_scales(size: int = 260) -> tuple[Scale, Scale]:
    """The scales :func:`_square` uses, for callers drawing inside it."""
    w, h = size + 20, size
    return Scale(0, 1, 48, w - 12), Scale(0, 1, h - 34, 10)


def curve_chart(
    kind: str,
    curves: Sequence[tuple[str, str, Curve]],
    baseline: float | None = None,
    points: Sequence[tuple[str, str, Any]] = (),
) -> str:
    """ROC (kind "roc") or precision-recall ("pr") curves of the chosen and the winner; with
    ``points`` (class, who, :class:`~ckptaudit.diagnostics.OperatingMarker`) each operating
    point is marked and the constraint drawn as a dashed line (issue 20)."""
    sx, sy = unit_scales()
    body = []
    body.extend(_operating_marks(kind, points, sx, sy))
    if kind == "roc":
        body.append(f'<line class="chance" x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}"/>')
    elif baseline is not None:
        body.append(f'<line class="chance" x1="{sx(0)}" y1="{sy(baseline):.1f}" x2="{sx(1)}" y2="{sy(baseline):.1f}"/>')
    for cls, who, c in curves:
        step = _line(c.x, c.y, sx, sy)
        area = "AUC" if kind == "roc" else "AP"
        body.append(f'<path class="dline {cls}" d="{step}"><title>{escape(who)}: {area} {fmt(c.area, 3)}</title></path>')
    if kind == "roc":
        return _square("ROC curve", "false positive rate", "true positive rate", body)
    return _square("Precision-recall curve", "recall", "precision", body)


def _operating_marks(kind: str, points: Sequence[tuple[str, str, Any]], sx: Scale, sy: Scale) -> list[str]:
    """The constraint line and each checkpoint's operating point on a ROC or PR chart."""
    out: list[str] = []
    if not points:
        return out
    m0 = points[0][2]
    line = None
    if kind == "pr" and m0.constraint == "precision":
        line = (sx(0), sy(m0.bound), sx(1), sy(m0.bound))
    elif kind == "pr" and m0.constraint == "recall" or kind == "roc" and m0.constraint == "recall":
        line = (sx(m0.bound), sy(0), sx(m0.bound), sy(1)) if kind == "pr" else (sx(0), sy(m0.bound), sx(1), sy(m0.bound))
    elif kind == "roc" and m0.constraint == "specificity":
        line = (sx(1 - m0.bound), sy(0), sx(1 - m0.bound), sy(1))
    if line is not None:
        out.append(
            f'<line class="constraint" stroke-dasharray="4 3" x1="{line[0]:.1f}" y1="{line[1]:.1f}" x2="{line[2]:.1f}" '
            f'y2="{line[3]:.1f}"><title>{escape(m0.constraint)} bound {m0.bound:g}</title></line>'
        )
    for cls, who, m in points:
        x, y = (m.recall, m.precision) if kind == "pr" else (m.fpr, m.recall)
        if y is None:
            continue
        out.append(
            f'<circle class="oppoint {cls}" r="5" cx="{sx(x):.1f}" cy="{sy(y):.1f}"><title>{escape(who)}: threshold '
            f"{m.threshold:.6g}, recall {m.recall:.4f}"
            + ("" if m.precision is None else f", precision {m.precision:.4f}")
            + f", fpr {m.fpr:.4f}</title></circle>"
        )
    return out


def reliability_chart(curves: Sequence[tuple[str, str, Reliability]]) -> str:
    """Observed frequency against mean predicted probability per bin; the diagonal is perfect calibration."""
    sx, sy = unit_scales()
    body = [f'<line class="chance" x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}"/>']
    for cls, who, r in curves:
        d = "".join(
            f"{'L' if i else 'M'}{sx(p):.1f},{sy(o):.1f}" for i, (p, o) in enumerate(zip(r.predicted, r.observed, strict=True))
        )
        body.append(f'<path class="dline {cls}" d="{d}"/>')
        total = sum(r.counts) or 1
        for p, o, n in zip(r.predicted, r.observed, r.counts, strict=True):
            radius = 2 + 5 * math.sqrt(n / total)
            body.append(
                f'<circle class="{cls}" cx="{sx(p):.1f}" cy="{sy(o):.1f}" r="{radius:.1f}">'
                f"<title>{escape(who)}: predicted {p:.3f}, observed {o:.3f}, {n} rows</title></circle>"
            )
    what = curves[0][2].what if curves else ""
    return _square(f"Reliability ({what})", f"mean predicted probability ({what})", "observed frequency", body)


def residual_chart(cls: str, who: str, r: Residuals) -> str:
    """Residuals (target minus prediction) against the prediction."""
    w, h = 360, 240
    xs, ys = r.predicted, r.residual
    lim = max(max((abs(v) for v in ys), default=1.0), 1e-12)
    yticks = nice_ticks(-lim, lim)
    xticks = nice_ticks(min(xs), max(xs))
    sx, sy = Scale(xticks[0], xticks[-1], 54, w - 12), Scale(yticks[0], yticks[-1], h - 34, 12)
    out = [f'<svg class="diag" viewBox="0 0 {w} {h}" role="img"><title>Residuals of {escape(who)}</title>']
    out += _axes(sx, sy, xticks, yticks, "prediction", w, h)
    out.append(f'<line class="chance" x1="54" x2="{w - 12}" y1="{sy(0):.1f}" y2="{sy(0):.1f}"/>')
    out.append(f'<g class="scatter {cls}">' + _each_point('<circle cx="%.1f" cy="%.1f" r="2"/>', xs, ys, sx, sy) + "</g>")
    out.append(
        f'<text class="ylabel" transform="translate(11,{(h - 34 + 12) / 2:.1f}) rotate(-90)" text-anchor="middle">target − prediction</text></svg>'
    )
    return "".join(out)
