"""Warm `rank --cache` keeps the metric values it computed (issue 21): a warm pass with the
same metrics on unchanged files reads no output and gives the same table; any change of a
file, of run.json or of the metrics computes the values again from the arrays."""

from __future__ import annotations

import json
import os

from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store import cache
from ckptaudit.store.cache import CACHE_DIR, VALUES_FILE

runner = CliRunner()


def _rank(run, *metrics: str, cache_flag: bool = True) -> list[dict]:
    args = ["rank", str(run), "--format", "json"] + [a for m in metrics for a in ("-m", m)]
    result = runner.invoke(app, args + (["--cache"] if cache_flag else []))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _no_output_reads(monkeypatch) -> list[int]:
    reads: list[int] = []
    real = cache.CachedRun.predictions

    def counted(self):
        reads.append(1)
        return real(self)

    monkeypatch.setattr(cache.CachedRun, "predictions", counted)
    return reads


def test_warm_pass_takes_the_kept_values_and_reads_no_output(copy_run, monkeypatch):
    run = copy_run("fraud")
    cold = _rank(run, "roc_auc", "recall", cache_flag=False)
    built = _rank(run, "roc_auc", "recall")
    assert (run / CACHE_DIR / VALUES_FILE).is_file()
    reads = _no_output_reads(monkeypatch)
    warm = _rank(run, "roc_auc", "recall")
    assert reads == []
    assert warm == built == cold


def test_other_metrics_are_computed_from_the_arrays_and_kept_too(copy_run, monkeypatch):
    run = copy_run("fraud")
    _rank(run, "accuracy")
    reads = _no_output_reads(monkeypatch)
    first = _rank(run, "f1")
    assert reads == [1, 1]  # open_cache's check, then the scoring pass
    assert _rank(run, "f1") == first == _rank(run, "f1", cache_flag=False)
    assert reads == [1, 1]  # kept: read no more
    assert len(json.loads((run / CACHE_DIR / VALUES_FILE).read_text())) == 2


def test_a_changed_file_is_never_served_old_values(copy_run):
    run = copy_run("fraud")
    before = {(r["checkpoint"]): r["accuracy"] for r in _rank(run, "accuracy")}
    files = sorted(run.glob("checkpoints/*/val.npz"))
    first, last = files[0], files[-1]
    os.replace(last, last.with_suffix(".bak"))
    last.write_bytes(first.read_bytes())  # the last checkpoint now has the first one's outputs
    after = {(r["checkpoint"]): r["accuracy"] for r in _rank(run, "accuracy")}
    assert after[last.parent.name] == before[first.parent.name] != before[last.parent.name]
    assert after == {(r["checkpoint"]): r["accuracy"] for r in _rank(run, "accuracy", cache_flag=False)}
