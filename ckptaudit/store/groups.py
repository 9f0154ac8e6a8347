"""Group columns of the run format: the slices a prediction file's rows belong to.

A ``val.npz`` or ``train.npz`` may carry one or more group columns, each an (N,) array of
integers or strings named ``group`` (the default column) or ``group:<name>`` (docs/format.md).
This module owns their names, their checks (shared by the reader and the recorder, so a
misuse fails with the same message on both sides), the writer's normalisation of what a
user passes (``val_groups=``), and the coding of one column into integer group codes that
the metrics and the selection statistics use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MetricError, RunFormatError

#: the default group column's name; named columns are ``group:<name>``
GROUP = "group"
PREFIX = GROUP + ":"


def is_group_key(key: str) -> bool:
    """Whether an array name in a prediction file is a group column."""
    return key == GROUP or (key.startswith(PREFIX) and len(key) > len(PREFIX))


def column_label(key: str) -> str:
    """The column's short name: ``group`` for the default column, ``<name>`` for ``group:<name>``."""
    return GROUP if key == GROUP else key[len(PREFIX) :]


def check_groups(path: Path, groups: Mapping[str, np.ndarray], n: int) -> None:
    """Raise :class:`RunFormatError` naming ``path`` unless every group column is an (N,)
    array of integers or strings (bools count as integers); N is ``n``, the file's rows."""
    for key, arr in groups.items():
        if not is_group_key(key):
            raise RunFormatError(f"{key!r} is not a group column name (use 'group' or 'group:<name>')", path)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise RunFormatError(f"'{key}' must be (N,) with N = {n}, got shape {arr.shape}", path)
        if arr.dtype.kind not in "biuUS":
            raise RunFormatError(f"'{key}' must hold integers or strings, got dtype {arr.dtype}", path)


def group_arrays(groups: Any, to_numpy: Any) -> dict[str, np.ndarray]:
    """What a writer stores for ``groups``: one array (the default ``group`` column) or a
    mapping of column name to array (``"group"`` or any name, stored as ``group:<name>``);
    ``to_numpy`` converts tensors and lists."""
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        groups = {GROUP: groups}
    out: dict[str, np.ndarray] = {}
    for name, values in groups.items():
        name = str(name)
        key = name if is_group_key(name) else PREFIX + name
        if not name or key in out:
            raise RunFormatError(f"group column name {name!r} is empty or given twice")
        arr = np.asarray(to_numpy(values))
        if arr.dtype == object:
            arr = arr.astype(str)  # a list of Python strings: stored as a fixed-width string array
        out[key] = arr
    return out


def pick_column(groups: Mapping[str, np.ndarray] | None, column: str | None, where: str) -> tuple[str, np.ndarray]:
    """The group column a metric reads: ``column`` (``group`` or a ``<name>``), else the
    default ``group`` column, else the only named one. Raises :class:`MetricError`."""
    if not groups:
        raise MetricError(f"{where}: the prediction file has no group column ('group' or 'group:<name>'; docs/format.md)")
    if column is not None:
        key = column if column == GROUP else PREFIX + column
        if key not in groups:
            known = ", ".join(column_label(k) for k in sorted(groups))
            raise MetricError(f"{where}: no group column {column!r}; the file has {known}")
        return key, groups[key]
    if GROUP in groups:
        return GROUP, groups[GROUP]
    if len(groups) == 1:
        key = next(iter(groups))
        return key, groups[key]
    known = ", ".join(column_label(k) for k in sorted(groups))
    raise MetricError(f"{where}: several group columns ({known}); name one with :by=NAME")


def group_codes(values: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes 0..G-1 of a group column (in sorted order of the values) and each
    code's name as text (so that ``group=NAME`` matches integer and string columns alike)."""
    uniques, codes = np.unique(values, return_inverse=True)
    names = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in uniques.tolist())
    return codes.astype(np.int64).reshape(-1), names
