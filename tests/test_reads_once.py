"""Each prediction file is read once per command (issue 9 §3): rank, rank --ci, audit,
pick and check stand on one evaluation pass per run, so a test counts the reads.

Every read of a val.npz or train.npz goes through ``ckptaudit.store.reader.read_npz``;
the test wraps it, counting per path, and runs each command through the CLI on copies of
the fixture runs (binary with train.npz, multiclass, regression).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ckptaudit.store.reader as reader
from ckptaudit.cli import app

runner = CliRunner()

#: (fixture run, metric with a per-row form, metric without one)
RUNS = [("fraud", "recall", "f1"), ("digits", "balanced_accuracy", "roc_auc"), ("overfit", "mse", "r2")]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counts: Counter = Counter()
    real = reader.read_npz

    def counting(path, *args, **kwargs):
        counts[Path(path).resolve()] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(reader, "read_npz", counting)
    return counts


def _prediction_files(run: Path, split: str) -> list[Path]:
    return sorted(p.resolve() for p in (run / "checkpoints").glob(f"*/{split}.npz"))


def _commands(run: Path, metric: str) -> dict[str, list[str]]:
    p = str(run)
    return {
        "rank": ["rank", p, "-m", metric, "-f", "json"],
        "rank --ci": ["rank", p, "-m", metric, "-f", "json", "--ci", "--resamples", "100"],
        "audit": ["audit", p, "-m", metric, "-f", "json", "--resamples", "100"],
        "pick": ["pick", p, "-m", metric, "-f", "json", "--resamples", "100"],
        "check": ["check", p, "-m", metric, "-f", "json", "--resamples", "100"],
    }


#: which splits each command reads: the audit (audit, and pick and check through it) also
#: reads train.npz, for the train/val comparisons and the overlap check
SPLITS = {"rank": ("val",), "rank --ci": ("val",), "audit": ("val", "train"), "pick": ("val", "train"), "check": ("val", "train")}


@pytest.mark.parametrize("name,metric,other", RUNS)
@pytest.mark.parametrize("command", list(SPLITS))
def test_each_prediction_file_is_read_once(copy_run, reads: Counter, name: str, metric: str, other: str, command: str) -> None:
    run = copy_run(name)
    for spec in (metric, other):
        reads.clear()
        result = runner.invoke(app, _commands(run, spec)[command])
        assert result.exit_code in (0, 1), result.output
        expected = {f: 1 for split in SPLITS[command] for f in _prediction_files(run, split)}
        assert expected, "the fixture has prediction files"
        assert dict(reads) == expected, f"{command} -m {spec}: {dict(reads)}"


def test_the_counter_sees_a_second_read(copy_run, reads: Counter) -> None:
    """The counting itself works: a verb that read twice would be caught."""
    from ckptaudit.metrics.spec import parse_metric
    from ckptaudit.stats.selection import evaluate_selection
    from ckptaudit.store.reader import discover

    run = discover([copy_run("fraud")])[0]
    spec = parse_metric("recall")
    evaluate_selection(run, spec, resamples=100)
    evaluate_selection(run, spec, resamples=100)
    assert set(reads.values()) == {2}
    assert len(reads) == len(_prediction_files(run.path, "val"))
