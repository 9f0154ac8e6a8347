"""The task of an imported run, read from the data at ``predict``, never guessed at import.

Weights alone cannot tell a binary model from a multiclass one: ``import`` without
``--task`` writes a run.json without ``task`` (every reader then says so in one line), and
``predict`` settles it from the validation targets and one checkpoint's outputs, by rules
that look at shapes and values only:

| outputs | targets | task |
| --- | --- | --- |
| (N,) | integers, all 0 or 1 | binary |
| (N,) | not integers | regression |
| (N, C), C >= 3 | integers 0..C-1, (N,) | multiclass |
| (N, C) | 0/1, (N, C) | multilabel |

and for the output kind: ``probability`` when every value lies in [0, 1] (and, multiclass,
each row sums to 1), ``label`` when a classifier's outputs are the class integers, else
``logit``. Anything else (integer targets beyond 0/1 with one output per row: a regression
or a label model?) or two outputs per row with 0/1 targets (binary, or 2-class multiclass:
the metrics differ) is refused with a one-line error naming ``--task``; so is an explicit
``--task``/``--output`` that the data contradict.

:func:`_settle_task` is predict's first step on such a run: it predicts one checkpoint
(the last with weights), applies these rules, writes the task into run.json and keeps that
checkpoint's ``val.npz`` so it is not predicted twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CkptauditError, RunFormatError, UsageError
from ..store.reader import META_FILE, OUTPUTS, TASKS, read_run
from ..store.safeio import read_json
from .prediction_files import _check_fits, stored_fingerprint, weights_in, write_split
from .predictor import Job, Options, PredictData, Predictor


def _integers(a: np.ndarray) -> bool:
    if a.dtype.kind in "iub":
        return True
    return a.dtype.kind == "f" and bool(np.all(np.isfinite(a))) and bool(np.all(a == np.round(a)))


def _in_unit(a: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(a))) and bool(a.min(initial=0.0) >= 0.0) and bool(a.max(initial=0.0) <= 1.0)


def _classifier_output(out: np.ndarray, target_classes: int | None, rows_sum_to_one: bool) -> str:
    if _integers(out) and (target_classes is None or bool(np.all((out >= 0) & (out < target_classes)))) and out.ndim == 1:
        return "label"
    if _in_unit(out) and (not rows_sum_to_one or bool(np.allclose(out.sum(axis=1), 1.0, atol=1e-4))):
        return "probability"
    return "logit"


def infer_task(
    target: np.ndarray, output: np.ndarray, *, task: str | None = None, kind: str | None = None
) -> tuple[str, str, str]:
    """``(task, output kind, why)`` for these validation targets and one checkpoint's outputs;
    ``task``/``kind`` given by the user are kept (and only the missing one is read)."""
    if task is not None and task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, not {task!r}")
    if kind is not None and kind not in OUTPUTS:
        raise UsageError(f"--output must be one of {', '.join(OUTPUTS)}, not {kind!r}")
    y, out = np.asarray(target), np.asarray(output)
    shapes = f"outputs {tuple(out.shape)}, targets {tuple(y.shape)}"
    if task is None:
        if out.ndim == 1 and y.ndim == 1:
            if _integers(y) and set(np.unique(y).tolist()) <= {0, 1}:
                task = "binary"
            elif not _integers(y):
                task = "regression"
            elif kind == "value":
                task = "regression"
            else:
                raise UsageError(
                    f"cannot tell the task from the data ({shapes}, integer targets beyond 0/1: "
                    "regression or class labels?): give --task regression or --task multiclass --output label"
                )
        elif out.ndim == 2 and y.ndim == 1 and out.shape[1] >= 2:
            if not (_integers(y) and y.min(initial=0) >= 0 and y.max(initial=0) < out.shape[1]):
                raise UsageError(
                    f"cannot tell the task from the data ({shapes}: targets are not class indices 0..{out.shape[1] - 1}): give --task"
                )
            if out.shape[1] == 2:
                # NOTE: both readings are valid and score differently (binary recall is class 1's,
                # multiclass recall a macro average): the user says which.
                raise UsageError(
                    f"cannot tell the task from the data ({shapes}): two outputs per row with 0/1 targets are "
                    "binary (metrics of class 1) or multiclass (macro averages): give --task binary or --task multiclass"
                )
            task = "multiclass"
        elif out.ndim == 2 and y.shape == out.shape and _integers(y) and set(np.unique(y).tolist()) <= {0, 1}:
            task = "multilabel"
        else:
            raise UsageError(f"cannot tell the task from the data ({shapes}): give --task")
        why = f"{task}, read from the data ({shapes})"
    else:
        why = f"{task}, as given"
    if kind is None:
        if task == "regression":
            kind = "value"
        elif task == "multiclass":
            kind = _classifier_output(out, out.shape[1] if out.ndim == 2 else None, rows_sum_to_one=out.ndim == 2)
        else:
            kind = _classifier_output(out, 2, rows_sum_to_one=False)
        why += f"; output {kind}, read from the values"
    if (task == "regression") != (kind == "value"):
        raise UsageError(f"--output {kind!r} does not fit task {task!r} (regression runs use 'value')")
    return task, kind, why


def _settle_task(path: Path, data: PredictData, options: Options, task: str | None, kind: str | None) -> str | None:
    """Give an imported run without a task its task, read from the data and the outputs of
    one checkpoint (written as that checkpoint's val.npz, so it is not predicted twice).
    Returns the note to show, or None when run.json already had a task."""
    from ..store.reader import RUN_FILE
    from ..store.recorder import write_json_atomic

    run_file = path / RUN_FILE
    try:
        raw = read_json(run_file)  # a regular file of bounded size only
    except (OSError, CkptauditError):
        return None  # read_run reports it
    if not isinstance(raw, dict):
        return None
    if raw.get("task") is not None:
        for option, given, have in (("--task", task, raw.get("task")), ("--output", kind, raw.get("output"))):
            if given is not None and given != have:
                raise UsageError(
                    f"{option} {given} contradicts run.json ({have}): {option} only completes an imported run that has none"
                )
        return None
    kind = kind if kind is not None else raw.get("output")
    folder, weights = _a_checkpoint_with_weights(path)
    predictor = Predictor(
        options.model,
        device=options.device,
        batch_size=options.batch_size,
        autocast=options.autocast,
        trust_pickle=options.trust_pickle,
    )
    predictor.load(weights)
    out = predictor.run(data)
    task, kind, why = infer_task(data.target, out, task=task, kind=kind)
    raw["task"], raw["output"] = task, kind
    if task == "binary":
        raw.setdefault("positive_class", 1)
    if task in ("multiclass", "multilabel") and out.ndim == 2 and "classes" not in raw and "num_classes" not in raw:
        raw["num_classes"] = int(out.shape[1])
    raw["task_from"] = f"predict: {why}"
    write_json_atomic(run_file, raw)
    run = read_run(path)
    ckpt = next(c for c in run.checkpoints if c.path == folder)
    job = Job(ckpt.name, ckpt.epoch, folder, weights, ("val",))
    if stored_fingerprint(ckpt.split_file("val")) is None:
        _check_fits(run, job, "val", data, out)
        write_split(folder, "val", data, out)
    return f"task {why}"


def _a_checkpoint_with_weights(path: Path) -> tuple[Path, Path]:
    """The last checkpoint folder (by epoch in meta.json) that has weights: trained the longest,
    its outputs show the output kind most plainly."""
    from ..store.reader import CHECKPOINTS_DIR

    found: list[tuple[int, str, Path, Path]] = []
    root = path / CHECKPOINTS_DIR
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            meta = read_json(folder / META_FILE)
        except (OSError, CkptauditError):
            continue
        weights = weights_in(folder)
        if isinstance(meta, dict) and weights is not None and isinstance(meta.get("epoch"), int):
            found.append((meta["epoch"], folder.name, folder, weights))
    if not found:
        raise RunFormatError("no checkpoint with weights to read the task from", path)
    _, _, folder, weights = max(found)
    return folder, weights
