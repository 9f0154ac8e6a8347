"""Per-slice metrics: ``worst_group(M)`` and ``M:group=NAME`` in the metric language.

A prediction file may carry group columns (:mod:`ckptaudit.store.groups`). Two forms of a
built-in metric ``M`` read them (docs/slices.md):

* ``worst_group(M)`` (optionally ``worst_group(M):by=COLUMN``): the worst value of ``M``
  over the groups of one column: the minimum for a metric that is maximised, the maximum
  for a loss. Groups where ``M`` is undefined (a class with no row) are left out.
* ``M:group=NAME`` (optionally ``,by=COLUMN``): ``M`` on the rows of one group only.

This module parses both (:func:`parse_grouped`, called first by
:func:`~ckptaudit.metrics.spec.parse_metric`), computes their values from the same kernels
on each group's rows (:func:`grouped_kernels` wraps every kernel, so every caller of
``KERNELS`` scores a grouped spec the same way), and gives every value of ``M`` per group
(:func:`per_group_values`), which ``rank --by group`` and the slice audit read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MetricError

if TYPE_CHECKING:
    from .prepared import Prepared
    from .spec import MetricSpec

_WORST = re.compile(r"^\s*worst_group\s*\((?P<inner>.+)\)\s*(?::(?P<tail>[^()]*))?$", re.IGNORECASE)


def is_grouped(spec: Any) -> bool:
    """Whether ``spec`` reads a group column (``worst_group(M)`` or ``M:group=NAME``)."""
    return getattr(spec, "group_agg", None) is not None or getattr(spec, "group_name", None) is not None


def _tail_options(text: str, tail: str | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    for item in (tail or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key != "by" or not value:
            raise MetricError(f"metric {text!r}: worst_group(M) takes only :by=COLUMN after it, not {item.strip()!r}")
        opts[key] = value
    return opts


def parse_grouped(
    text: str, *, mode: str | None, logged: Iterable[str], logged_modes: Mapping[str, str] | None
) -> MetricSpec | None:
    """The spec of a grouped metric text, or None when ``text`` is not one."""
    from .spec import _split, parse_metric

    match = _WORST.match(text)
    if match is not None:
        by = _tail_options(text, match.group("tail")).get("by")
        inner = parse_metric(match.group("inner").strip(), mode=mode, logged=logged, logged_modes=logged_modes)
        if inner.source != "builtin":
            raise MetricError(f"metric {text!r}: worst_group needs a built-in metric computed from predictions")
        if is_grouped(inner):
            raise MetricError(f"metric {text!r}: worst_group of a metric that already names a group")
        return replace(inner, text=text, group_agg="worst", group_column=by)
    if "worst_group" in text.lower():
        raise MetricError(f"metric {text!r}: write worst_group(METRIC), e.g. worst_group(accuracy)")
    if "group=" not in text.lower() and "by=" not in text.lower():
        return None
    name, opts = _split(text.strip())
    if "group" not in opts:
        if "by" in opts:
            raise MetricError(f"metric {text!r}: by=COLUMN goes with group=NAME or worst_group(M)")
        return None
    group, by = opts.pop("group"), opts.pop("by", None)
    rebuilt = name + (":" + ",".join(f"{k}={v}" for k, v in opts.items()) if opts else "")
    inner = parse_metric(rebuilt, mode=mode, logged=logged, logged_modes=logged_modes)
    if inner.source != "builtin":
        raise MetricError(f"metric {text!r}: group=NAME needs a built-in metric computed from predictions")
    return replace(inner, text=text, group_name=group, group_column=by)


def group_view(spec: MetricSpec, prep: Prepared) -> tuple[np.ndarray, tuple[str, ...]]:
    """The group codes (0..G-1 per row) and names of the column ``spec`` reads from ``prep``."""
    from ..store.groups import group_codes, pick_column

    key = ("groups", spec.group_column)
    cached: Any = prep._cache.get(key)
    if cached is None:
        _, values = pick_column(getattr(prep, "groups", None), spec.group_column, f"metric {spec.text!r}")
        cached = group_codes(values)
        prep._cache[key] = cached
    return cached


def per_group_values(kernel: Callable[[Prepared, MetricSpec], float], spec: MetricSpec, prep: Prepared) -> dict[str, float]:
    """The value of ``spec``'s metric on each group's rows (NaN where undefined), by name."""
    codes, names = group_view(spec, prep)
    out: dict[str, float] = {}
    for g, name in enumerate(names):
        rows = np.flatnonzero(codes == g)
        out[name] = float(kernel(prep.take(rows), spec)) if rows.size else math.nan
    return out


def worst_of(values: Iterable[float], maximize: bool) -> float:
    """The worst finite value (min when maximised, max for a loss); NaN when none is finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan
    return min(finite) if maximize else max(finite)


def grouped_value(kernel: Callable[[Prepared, MetricSpec], float], spec: MetricSpec, prep: Prepared) -> float:
    """The value of a grouped spec: its group's value (``group=NAME``) or the worst group's."""
    if spec.group_name is not None:
        codes, names = group_view(spec, prep)
        wanted = spec.group_name
        if wanted not in names:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise MetricError(f"metric {spec.text!r}: no group {wanted!r}; the groups are {shown}")
        return float(kernel(prep.take(np.flatnonzero(codes == names.index(wanted))), spec))
    return worst_of(per_group_values(kernel, spec, prep).values(), spec.maximize)


def grouped_kernels(
    kernels: dict[str, Callable[[Prepared, MetricSpec], float]],
) -> dict[str, Callable[[Prepared, MetricSpec], float]]:
    """Each kernel wrapped so that a grouped spec is scored on its groups' rows (a plain
    spec goes straight to the kernel)."""

    def wrap(kernel: Callable[[Prepared, MetricSpec], float]) -> Callable[[Prepared, MetricSpec], float]:
        def scored(prep: Prepared, spec: MetricSpec) -> float:
            if spec.group_agg is None and spec.group_name is None:
                return kernel(prep, spec)
            return grouped_value(kernel, spec, prep)

        scored.__wrapped__ = kernel  # type: ignore[attr-defined]
        scored.__doc__ = kernel.__doc__
        return scored

    return {name: wrap(k) for name, k in kernels.items()}


def plain(spec: MetricSpec) -> MetricSpec:
    """``spec`` without its group part (the metric ``M`` of ``worst_group(M)``)."""
    return replace(spec, group_agg=None, group_name=None)
