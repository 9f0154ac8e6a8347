"""Cost linear in checkpoints and runs (issue 10): lookups by name are dictionary lookups,
pick groups scores by run in one pass. Shown by counting passes over the data (no timed
tests); bench/bench_linear.py shows the per-checkpoint cost staying flat."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ckptaudit.metrics.evaluation import CheckpointScore
from ckptaudit.picking import _group_by_run
from ckptaudit.store.reader import Checkpoint, Run, read_run
from tests.runfiles import write_run


class CountingTuple(tuple):
    """A tuple that counts how often it is iterated."""

    passes = 0

    def __iter__(self):
        type(self).passes += 1
        return super().__iter__()


def _run(tmp: Path, names: list[str]) -> Run:
    ckpts = CountingTuple(Checkpoint(tmp / "checkpoints" / n, n, i, None, {}) for i, n in enumerate(names))
    return Run(tmp, "r", "binary", "probability", None, 1, None, None, ckpts)


def test_checkpoint_lookup_builds_its_index_once(tmp_path: Path) -> None:
    names = [f"epoch-{i:04d}" for i in range(500)]
    run = _run(tmp_path, names)
    CountingTuple.passes = 0
    found = [run.checkpoint(n) for n in names]
    assert [c.name for c in found if c is not None] == names
    assert run.checkpoint("epoch-9999") is None
    # one pass to build the index, none per lookup (the old scan made 500)
    assert CountingTuple.passes == 1


def test_copy_with_other_checkpoints_never_reads_a_stale_index(tmp_path: Path) -> None:
    run = _run(tmp_path, ["a", "b", "c"])
    assert run.checkpoint("a") is not None
    only_b = Run(**{**run.__dict__, "checkpoints": (run.checkpoints[1],)})  # as discover_sweep narrows a run
    assert only_b.checkpoint("a") is None
    assert only_b.checkpoint("b") is run.checkpoints[1]
    replaced = dataclasses.replace(run, checkpoints=(run.checkpoints[2],))
    assert replaced.checkpoint("b") is None and replaced.checkpoint("c") is run.checkpoints[2]
    assert run.checkpoint("a") is run.checkpoints[0]  # the original still finds its own


def test_alias_lookup_names_its_target(tmp_path: Path) -> None:
    write_run(tmp_path / "run", "binary", "probability", [0, 1, 1], [[0.1, 0.9, 0.8]] * 3)
    ckpts = tmp_path / "run" / "checkpoints"
    os.symlink("epoch-0001", ckpts / "best")
    os.symlink(str((ckpts / "epoch-0002").resolve()), ckpts / "last")  # absolute target
    os.symlink("../..", ckpts / "outside")
    run = read_run(tmp_path / "run")
    best, last = run.checkpoint("best"), run.checkpoint("last")
    assert best is not None and best.name == "epoch-0001"
    assert last is not None and last.name == "epoch-0002"
    assert run.checkpoint("outside") is None
    assert run.checkpoint("..") is None and run.checkpoint("") is None


def test_alias_through_a_linked_run_folder(tmp_path: Path) -> None:
    write_run(tmp_path / "real", "binary", "probability", [0, 1], [[0.2, 0.7]] * 2)
    os.symlink(tmp_path / "real", tmp_path / "linked")
    os.symlink("epoch-0000", tmp_path / "real" / "checkpoints" / "best")
    run = read_run(tmp_path / "linked")
    found = run.checkpoint("best")
    assert found is not None and found.name == "epoch-0000"


def test_pick_groups_scores_by_run_in_one_pass(tmp_path: Path) -> None:
    runs = [_run(tmp_path / f"r{i}", [f"e{j}" for j in range(3)]) for i in range(200)]
    scores = [CheckpointScore(run, c, (0.5,), ()) for run in runs for c in tuple.__iter__(run.checkpoints)]
    shuffled = CountingTuple(scores[1::2] + scores[::2])
    CountingTuple.passes = 0
    groups = _group_by_run(shuffled, runs)
    assert CountingTuple.passes == 1
    expected = [[s for s in shuffled if s.run is run] for run in runs]  # the old grouping
    assert groups == expected
