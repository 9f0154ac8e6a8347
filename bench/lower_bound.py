"""The floor `ckptaudit rank` is measured against (issue 10): the fastest honest script.

    python bench/lower_bound.py ROOT [--metric recall] [--method direct|stack] [--values-out FILE]

Finds every run under ROOT (a folder holding run.json, as docs/format.md says), orders each
run's checkpoints by meta.json epoch then step, and scores every checkpoint's val.npz under
one metric, keeping the validation-set check (every checkpoint's targets, and ids when
present, must equal the first checkpoint's, as `ckptaudit rank` requires). Two methods:

- ``direct`` (the lower bound): read each zip's central directory, then read the stored
  ``.npy`` members' bytes straight into one preallocated (checkpoints x rows) matrix with
  ``readinto`` (no zipfile chunking, no CRC, no fresh pages per checkpoint) and compute the
  metric for all checkpoints with one vectorised expression. Outputs wider than one column
  (multiclass logits, multilabel) go through one reused (rows x columns) buffer and are
  reduced to hard labels checkpoint by checkpoint. Compressed members fall back to np.load.
- ``stack`` (the hand-written numpy script): np.load each file, np.stack the outputs, one
  vectorised metric.

Metrics: recall (binary), accuracy (binary, multiclass; multilabel: subset accuracy, as
scikit-learn and ckptaudit define it), mse (regression). Probabilities are positive above
0.5; logits above 0; multiclass predictions are the argmax of the stored scores.

Prints one JSON line: the checkpoint count and the best checkpoint. --values-out writes
every [run, checkpoint, value] so that a harness can compare with `rank --format json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

METRICS = ("recall", "accuracy", "mse")


def find_runs(root: Path) -> list[Path]:
    """Every run folder under ``root`` (not descending into runs, not following links)."""
    if (root / "run.json").is_file():
        return [root]
    runs: list[Path] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            runs.extend(find_runs(Path(entry.path)))
    return runs


def checkpoints(run: Path) -> list[tuple[str, Path]]:
    """The run's (name, folder) pairs in epoch, step order, skipping in-progress folders."""
    found = []
    for entry in os.scandir(run / "checkpoints"):
        if entry.name.startswith(".") or entry.name.endswith(".tmp") or not entry.is_dir():
            continue
        meta = json.loads(Path(entry.path, "meta.json").read_text())
        found.append((int(meta["epoch"]), int(meta.get("step") or 0), entry.name, Path(entry.path)))
    found.sort(key=lambda c: (c[0], c[1], c[2]))
    return [(name, path) for _, _, name, path in found]


class Member:
    """Where one stored .npy member's data lies in its zip file, and its array header."""

    __slots__ = ("offset", "shape", "dtype", "fortran", "info")

    def __init__(self, fh, info: zipfile.ZipInfo) -> None:
        self.info = info
        self.offset = -1
        self.shape: tuple[int, ...] = ()
        self.dtype = np.dtype("u1")
        self.fortran = False
        if info.compress_type != zipfile.ZIP_STORED:
            return
        # NOTE: the local header's extra field may differ from the central directory's.
        fh.seek(info.header_offset)
        local = fh.read(30)
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            self.shape, self.fortran, self.dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            self.shape, self.fortran, self.dtype = np.lib.format.read_array_header_2_0(fh)
        self.offset = fh.tell()


def zip_directory(fh) -> dict[str, Member]:
    """The .npy members of an open npz file, by array name."""
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
    return {i.filename[:-4]: Member(fh, i) for i in infos if i.filename.endswith(".npy")}


def read_into(fh, member: Member, out: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Read ``member`` into ``out`` (same shape) without an intermediate copy when possible."""
    if member.offset >= 0 and member.dtype == out.dtype and not member.fortran and not member.dtype.hasobject:
        if tuple(member.shape) != out.shape:
            raise SystemExit(f"{path}: {name} has shape {member.shape}, expected {out.shape}")
        fh.seek(member.offset)
        view = memoryview(out.reshape(-1).view(np.uint8))
        if fh.readinto(view) != view.nbytes:
            raise SystemExit(f"{path}: {name} is truncated")
        return out
    # compressed member, other dtype or Fortran order: let numpy read it
    with np.load(path, allow_pickle=False) as npz:
        arr = npz[name]
    if arr.shape != out.shape:
        raise SystemExit(f"{path}: {name} has shape {arr.shape}, expected {out.shape}")
    out[...] = arr
    return out


def labels(task: str, output_kind: str, out: np.ndarray) -> np.ndarray:
    """Hard predictions of (K, N) binary scores, or of one (N, C) / (N, L) matrix."""
    if output_kind == "label":
        return out.astype(np.int64) if task == "multiclass" else out.astype(bool)
    if task == "multiclass":
        return out.argmax(axis=-1)
    return out > (0.5 if output_kind == "probability" else 0.0)


def score_run_direct(run: Path, spec: dict, metric: str) -> list[tuple[str, float]]:
    """All checkpoint values of one run, read with the direct reader."""
    ckpts = checkpoints(run)
    if not ckpts:
        return []
    task, kind = spec["task"], spec["output"]
    with open(ckpts[0][1] / "val.npz", "rb") as fh:
        first = zip_directory(fh)
    tshape, oshape = tuple(first["target"].shape), tuple(first["output"].shape)
    target0 = np.empty(tshape, first["target"].dtype)
    target = np.empty_like(target0)
    ids0 = np.empty(first["id"].shape, first["id"].dtype) if "id" in first else None
    ids = None if ids0 is None else np.empty_like(ids0)
    wide = len(oshape) > 1 and task != "regression"
    if wide:
        buffer = np.empty(oshape, first["output"].dtype)
        if task == "multiclass":
            preds = np.empty((len(ckpts), oshape[0]), np.int64)
        else:
            preds = np.empty((len(ckpts),) + oshape, bool)
    else:
        matrix = np.empty((len(ckpts),) + oshape, first["output"].dtype)
    for k, (name, folder) in enumerate(ckpts):
        path = folder / "val.npz"
        with open(path, "rb") as fh:
            members = first if k == 0 else zip_directory(fh)
            if k == 0:
                read_into(fh, members["target"], target0, path, "target")
                if ids0 is not None:
                    read_into(fh, members["id"], ids0, path, "id")
            else:
                # the validation-set check: same targets (and ids) as the first checkpoint
                if tuple(members["target"].shape) != tshape or not np.array_equal(
                    read_into(fh, members["target"], target, path, "target"), target0
                ):
                    raise SystemExit(f"{run}: the validation set changed at {name}")
                if ids0 is not None:
                    if "id" not in members or tuple(members["id"].shape) != ids0.shape:
                        raise SystemExit(f"{run}: sample ids changed at {name}")
                    if not np.array_equal(read_into(fh, members["id"], ids, path, "id"), ids0):
                        raise SystemExit(f"{run}: sample ids changed at {name}")
            if wide:
                preds[k] = labels(task, kind, read_into(fh, members["output"], buffer, path, "output"))
            else:
                read_into(fh, members["output"], matrix[k], path, "output")
    return list(
        zip([n for n, _ in ckpts], vectorised_metric(task, kind, metric, target0, preds if wide else matrix), strict=True)
    )


def score_run_stack(run: Path, spec: dict, metric: str) -> list[tuple[str, float]]:
    """All checkpoint values of one run: np.load, np.stack, one metric."""
    ckpts = checkpoints(run)
    if not ckpts:
        return []
    task, kind = spec["task"], spec["output"]
    outputs, target0, ids0 = [], None, None
    for name, folder in ckpts:
        with np.load(folder / "val.npz", allow_pickle=False) as npz:
            target = npz["target"]
            ids = npz["id"] if "id" in npz.files else None
            output = npz["output"]
        if target0 is None:
            target0, ids0 = target, ids
        elif not np.array_equal(target, target0) or not (ids is None and ids0 is None or np.array_equal(ids, ids0)):
            raise SystemExit(f"{run}: the validation set changed at {name}")
        outputs.append(labels(task, kind, output) if len(output.shape) > 1 and task != "regression" else output)
    stacked = np.stack(outputs)
    return list(zip([n for n, _ in ckpts], vectorised_metric(task, kind, metric, target0, stacked), strict=True))


def vectorised_metric(task: str, kind: str, metric: str, target: np.ndarray, values: np.ndarray) -> list[float]:
    """One metric for K checkpoints at once; ``values`` is (K, N) scores, or hard labels
    already (multiclass (K, N), multilabel (K, N, L))."""
    if metric == "mse":
        if task != "regression":
            raise SystemExit("mse needs a regression run")
        diff = values.astype(np.float64) - target.astype(np.float64)
        return (diff * diff).reshape(diff.shape[0], -1).mean(axis=1).tolist()
    if task == "binary":
        pred = values if values.dtype == bool else labels(task, kind, values)
        positive = target == 1
        if metric == "recall":
            return (np.count_nonzero(pred & positive, axis=1) / np.count_nonzero(positive)).tolist()
        if metric == "accuracy":
            return (np.count_nonzero(pred == positive, axis=1) / target.shape[0]).tolist()
    if metric == "accuracy" and task == "multiclass":
        return (np.count_nonzero(values == target, axis=1) / target.shape[0]).tolist()
    if metric == "accuracy" and task == "multilabel":
        return (np.all(values == target.astype(bool), axis=2).sum(axis=1) / target.shape[0]).tolist()
    raise SystemExit(f"{metric} is not implemented here for {task} runs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--metric", default="recall", choices=METRICS)
    parser.add_argument("--method", default="direct", choices=("direct", "stack"))
    parser.add_argument("--values-out", type=Path, default=None, help="write every [run, checkpoint, value] as JSON")
    args = parser.parse_args(argv)
    score_run = score_run_direct if args.method == "direct" else score_run_stack
    higher_better = args.metric != "mse"
    rows: list[tuple[str, str, float]] = []
    for run in find_runs(args.root):
        spec = json.loads((run / "run.json").read_text())
        rows.extend((str(run), name, value) for name, value in score_run(run, spec, args.metric))
    if not rows:
        print(json.dumps({"checkpoints": 0}))
        return 2
    best = max(rows, key=lambda r: r[2]) if higher_better else min(rows, key=lambda r: r[2])
    print(json.dumps({"checkpoints": len(rows), "metric": args.metric, "best": list(best)}))
    if args.values_out is not None:
        args.values_out.write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
