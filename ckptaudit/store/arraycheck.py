"""The checks every prediction file's arrays pass before anything scores them.

This module owns :func:`check_arrays`: shapes against the run's task and output kind, the
values (probabilities in [0, 1] that sum to one, labels within the classes, finite
regression targets) and the optional ``id``/``input_hash`` columns. The reader runs it on
every read and the recorder at every ``save``, so a misuse fails with the same message on
both sides.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np

from ..errors import RunFormatError
from .runformat import Run


def _integers_at_most(values: np.ndarray, high: int) -> bool:
    """True when ``values`` are integers (or bools) from 0 to ``high``, by one max over
    their unsigned view; False where that cannot tell (floats, strided arrays)."""
    if values.dtype.kind not in "biu" or not values.flags.c_contiguous or values.size == 0:
        return False
    return bool(values.view(f"u{values.dtype.itemsize}").max() <= high)


def _check_shapes(run: Run, path: Path, target: np.ndarray, output: np.ndarray, target_checked: bool = False) -> None:
    task, kind = run.task, run.output
    n = target.shape[0] if target.ndim else 0
    if target.ndim == 0 or n == 0:
        raise RunFormatError("'target' is empty", path)
    if output.ndim == 0 or output.shape[0] != n:
        raise RunFormatError(f"'target' has {n} rows but 'output' has {output.shape[0] if output.ndim else 0}", path)
    if target.dtype.kind not in "biuf" or output.dtype.kind not in "biuf":
        raise RunFormatError("'target' and 'output' must be numeric arrays", path)
    if task == "regression":
        if target.shape != output.shape or target.ndim > 2:
            raise RunFormatError(
                f"regression 'target' {target.shape} and 'output' {output.shape} must have the same shape, (N,) or (N, D)", path
            )
        return
    if task in ("binary", "multiclass"):
        if target.ndim != 1:
            raise RunFormatError(f"'target' must be (N,) class indices, got shape {target.shape}", path)
        if not target_checked and target.dtype.kind == "f" and not np.all(np.mod(target, 1) == 0):
            raise RunFormatError("'target' must hold integer class indices", path)
        # NOTE: 0/1 integers pass with one unsigned max (negatives wrap above 1); a target
        # already checked (the same array as the checkpoint before) passed all of this.
        binary_ok = task == "binary" and (target_checked or _integers_at_most(target, 1))
        if not binary_ok and not target_checked and target.min() < 0:
            raise RunFormatError("'target' holds a negative class index", path)
    if task == "binary":
        if not binary_ok and target.max() > 1:
            raise RunFormatError(f"a binary 'target' holds class {int(target.max())}; only 0 and 1 exist", path)
        if kind == "label" and output.ndim != 1:
            raise RunFormatError(f"label 'output' must be (N,), got {output.shape}", path)
        if output.ndim == 2 and output.shape[1] not in (1, 2) or output.ndim > 2:
            raise RunFormatError(f"binary 'output' must be (N,), (N, 1) or (N, 2), got {output.shape}", path)
    elif task == "multiclass":
        if kind == "label":
            if output.ndim != 1:
                raise RunFormatError(f"label 'output' must be (N,), got {output.shape}", path)
            return
        if output.ndim != 2:
            raise RunFormatError(f"multiclass 'output' must be (N, C), got {output.shape}", path)
        c = output.shape[1]
        if run.classes is not None and len(run.classes) != c:
            raise RunFormatError(f"'output' has {c} columns but run.json names {len(run.classes)} classes", path)
        if target.max() >= c:
            raise RunFormatError(f"'target' holds class {int(target.max())} but 'output' has only {c} columns", path)
    elif task == "multilabel":
        if target.ndim != 2 or output.shape != target.shape:
            raise RunFormatError(f"multilabel 'target' {target.shape} and 'output' {output.shape} must both be (N, L)", path)
        if not target_checked and not _integers_at_most(target, 1) and not np.isin(target, (0, 1)).all():
            raise RunFormatError("multilabel 'target' must hold 0/1", path)


#: how far a probability row's sum may stray from 1: max(1e-3, sqrt(eps)) of the
#: stored float type (float16: 0.031), so float32 or float16 softmax output passes
PROBABILITY_SUM_TOLERANCE = 1e-3


def _sum_tolerance(dtype: np.dtype) -> float:
    return max(PROBABILITY_SUM_TOLERANCE, float(np.sqrt(np.finfo(dtype).eps))) if dtype.kind == "f" else PROBABILITY_SUM_TOLERANCE


def _first_bad(values: np.ndarray, low: float, high: float, integer: bool) -> float | None:
    """The first value outside [low, high] (or not a whole number, where ``integer``),
    ignoring NaN and infinity, which the scorer reports as unscorable; else None."""
    if values.dtype.kind == "b" or values.size == 0:
        return None
    # NOTE: two reductions settle the common case; NaN fails them and takes the slow path.
    whole = not integer or values.dtype.kind in "iu" or bool(np.all(np.mod(values, 1) == 0))
    if values.min() >= low and values.max() <= high and whole:
        return None
    with np.errstate(invalid="ignore"):
        bad = (values < low) | (values > high)
        if integer and values.dtype.kind == "f":
            bad |= np.mod(values, 1) != 0
        if values.dtype.kind == "f":
            bad &= np.isfinite(values)
    hits = np.flatnonzero(bad.ravel())
    return None if hits.size == 0 else values.ravel()[hits[0]].item()


#: float type -> (unsigned integer type of its width, the bit pattern of 1.0)
_UNIT_BITS = {
    np.dtype(np.float16): (np.uint16, 0x3C00),
    np.dtype(np.float32): (np.uint32, 0x3F800000),
    np.dtype(np.float64): (np.uint64, 0x3FF0000000000000),
}


def _in_unit_interval(values: np.ndarray) -> bool:
    """True when every value is in [0, 1], by one unsigned-integer max: the IEEE bit
    patterns of +0.0 to 1.0 are exactly the integers up to that of 1.0, and negative
    numbers, NaN and infinity all lie above it. (False may still be fine: -0.0, NaN.)"""
    bits = _UNIT_BITS.get(values.dtype)
    if bits is None or not values.flags.c_contiguous or values.size == 0:
        return False
    return bool(values.view(bits[0]).max() <= bits[1])


def _check_values(run: Run, path: Path, target: np.ndarray, output: np.ndarray) -> None:
    """Values the shapes cannot catch: class indices outside the run's classes, hard
    labels that are not class indices (or 0/1), probabilities outside [0, 1] and
    probability rows that do not sum to 1 (docs/format.md gives the tolerance)."""
    task, kind = run.task, run.output
    if task == "regression":
        return
    if task == "multiclass":
        n_classes = run.num_classes if kind == "label" else output.shape[1]
        assert n_classes is not None
        if kind != "label" and run.num_classes is not None and run.num_classes != n_classes:
            raise RunFormatError(f"'output' has {n_classes} columns but run.json declares {run.num_classes} classes", path)
        if int(target.max()) >= n_classes:
            raise RunFormatError(
                f"'target' holds class {int(target.max())}, but the run has {n_classes} classes (0 to {n_classes - 1})", path
            )
    elif task == "multilabel" and run.num_classes is not None and target.shape[1] != run.num_classes:
        raise RunFormatError(f"'target' has {target.shape[1]} labels but run.json declares {run.num_classes}", path)
    if kind == "label":
        high = 1 if task in ("binary", "multilabel") else cast(int, n_classes) - 1
        bad = _first_bad(output, 0, high, integer=True)
        if bad is not None:
            allowed = "0 or 1" if high == 1 else f"a class index from 0 to {high}"
            raise RunFormatError(f"'output' holds label {bad:g}; each label must be {allowed}", path)
    elif kind == "probability":
        # NOTE: the bit-pattern test keeps this check off the profile of `rank`.
        bad = None if _in_unit_interval(output) else _first_bad(output, 0.0, 1.0, integer=False)
        if bad is not None:
            raise RunFormatError(
                f"'output' holds probability {bad:g}, outside [0, 1] (were logits stored as output 'probability'?)", path
            )
        # NOTE: a binary (N, 1) output is the positive class's column alone, not a full row.
        if output.ndim == 2 and output.shape[1] > 1 and task in ("binary", "multiclass"):
            sums = output.sum(axis=1, dtype=np.float64)
            tol = _sum_tolerance(output.dtype)
            off = np.abs(sums - 1.0) > tol
            if off.any():
                # NOTE: a row with a NaN/inf output is reported by the scorer, not here.
                off &= np.isfinite(sums)
                rows = np.flatnonzero(off)
                if rows.size:
                    raise RunFormatError(
                        f"'output' row {int(rows[0])} sums to {sums[rows[0]]:.6g}; probabilities of one row must sum to 1 "
                        f"(within {tol:g}); {rows.size} of {sums.size} rows do not",
                        path,
                    )


def check_arrays(
    run: Run,
    path: Path,
    target: np.ndarray,
    output: np.ndarray,
    ids: np.ndarray | None = None,
    hashes: np.ndarray | None = None,
    *,
    target_checked: bool = False,
) -> None:
    """The reader's checks of one split's arrays against run.json; raise :class:`RunFormatError`
    naming ``path``. The recorder calls this same function before it writes a file.
    ``target_checked``: ``target`` is an array that passed these checks for this run
    before (the checks of it alone are skipped; those against ``output`` still run)."""
    _check_shapes(run, path, target, output, target_checked)
    if not target_checked:
        _check_hostile_values(run, path, target, output)
    _check_values(run, path, target, output)
    for label, arr in (("id", ids), ("input_hash", hashes)):
        if arr is not None and (arr.ndim != 1 or arr.shape[0] != target.shape[0]):
            raise RunFormatError(f"'{label}' must be (N,) with N = {target.shape[0]}", path)
        if arr is not None and arr.dtype.kind not in "iuUS":
            raise RunFormatError(f"'{label}' must hold integers or strings, got dtype {arr.dtype}", path)


def _check_hostile_values(run: Run, path: Path, target: np.ndarray, output: np.ndarray) -> None:
    """NaN or infinite regression targets: a NaN never equals itself, so it looked like a
    changed validation set, and an infinite target scored nothing with exit 0."""
    if run.task == "regression":
        bad = ~np.isfinite(target)
        if bad.any():
            rows = np.flatnonzero(bad.reshape(target.shape[0], -1).any(axis=1))
            raise RunFormatError(
                f"'target' holds NaN or infinite values in {rows.size} row(s) (first: row {int(rows[0])}); "
                "regression targets must be finite",
                path,
            )
