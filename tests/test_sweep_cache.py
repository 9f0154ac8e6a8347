"""`rank SWEEP --cache` keeps a sweep's metadata and metric values in one book (issue 21):
a warm pass over unchanged runs opens no meta.json, no run cache and no output, and gives
the table of a plain pass; a changed meta.json, run.json or val.npz is read again; files
too recent to be judged by stat are never kept; a damaged or linked book is ignored."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store import cache, sweepcache
from ckptaudit.store.sweepcache import BOOK_FILE

runner = CliRunner()
RUNS = ("fraud", "digits", "noisy-train")


@pytest.fixture
def sweep(copy_run, tmp_path):
    for name in RUNS:
        copy_run(name, f"sweep/{name}")
    time.sleep(0.05)  # (the copies' times strictly before any pass's start)
    return tmp_path / "sweep"


def _rank(path, *metrics: str, cache_flag: bool = True) -> list[dict]:
    args = ["rank", str(path), "--format", "json"] + [a for m in metrics for a in ("-m", m)]
    result = runner.invoke(app, args + (["--cache"] if cache_flag else []))
    assert result.exit_code == 0, result.output
    return [{k: v for k, v in row.items() if k != "time"} for row in json.loads(result.output)]


def _counted(monkeypatch, owner, name: str) -> list[str]:
    calls: list[str] = []
    real = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(str(args[0]) if args else "")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _as_if_old(monkeypatch) -> None:
    # NOTE: a file's change time cannot be set back, so "old enough to judge by stat" is
    # had by a zero margin (the fixture's copies are 50 ms older than the pass)
    monkeypatch.setattr(cache, "RACY_NS", 0)


def test_a_warm_sweep_opens_no_metadata_no_run_cache_and_no_output(sweep, monkeypatch):
    _as_if_old(monkeypatch)
    cold = _rank(sweep, "recall", "accuracy", cache_flag=False)
    built = _rank(sweep, "recall", "accuracy")
    book = json.loads((sweep / BOOK_FILE).read_text())
    assert sorted(book["files"]) == sorted(RUNS) and len(book["keys"]) == 1
    meta_reads = _counted(monkeypatch, sweepcache, "read_json")
    indexes = _counted(monkeypatch, cache, "valid_index")
    outputs = _counted(monkeypatch, cache.CachedRun, "predictions")
    warm = _rank(sweep, "recall", "accuracy")
    assert (meta_reads, indexes, outputs) == ([], [], [])
    assert warm == built == cold
    assert not list(sweep.glob(f"{BOOK_FILE}*.tmp"))


def test_other_metrics_take_the_run_caches_and_join_the_book(sweep, monkeypatch):
    _as_if_old(monkeypatch)
    _rank(sweep, "recall")
    first = _rank(sweep, "f1")
    outputs = _counted(monkeypatch, cache.CachedRun, "predictions")
    assert _rank(sweep, "f1") == first == _rank(sweep, "f1", cache_flag=False)
    assert outputs == []
    assert len(json.loads((sweep / BOOK_FILE).read_text())["keys"]) == 2


def test_a_changed_meta_json_is_read_again(sweep, monkeypatch):
    _as_if_old(monkeypatch)
    _rank(sweep, "val_loss")
    meta = sorted((sweep / "fraud").glob("checkpoints/*/meta.json"))[-1]
    st = meta.stat()
    doc = json.loads(meta.read_text())
    doc["logged"]["val_loss"] = 123.5
    meta.write_text(json.dumps(doc))
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns))  # (the change time still moves)
    warm = _rank(sweep, "val_loss")
    assert any(r["val_loss"] == 123.5 and r["checkpoint"] == meta.parent.name for r in warm)
    assert warm == _rank(sweep, "val_loss", cache_flag=False)


def test_a_changed_run_json_is_read_again(sweep, monkeypatch):
    _as_if_old(monkeypatch)
    _rank(sweep, "accuracy")
    run_file = sweep / "digits" / "run.json"
    doc = json.loads(run_file.read_text())
    doc["format"] = "ckptaudit/99"
    run_file.write_text(json.dumps(doc))
    result = runner.invoke(app, ["rank", str(sweep), "-m", "accuracy", "--format", "json", "--cache"])
    plain = runner.invoke(app, ["rank", str(sweep), "-m", "accuracy", "--format", "json"])
    assert "unknown format 'ckptaudit/99'" in result.output and result.output == plain.output


def test_values_kept_under_another_run_json_are_not_served(sweep, monkeypatch):
    _as_if_old(monkeypatch)
    before = _rank(sweep, "recall")
    run_file = sweep / "fraud" / "run.json"
    doc = json.loads(run_file.read_text())
    doc["positive_class"] = 1 - doc.get("positive_class", 1)  # (recall of the other class now)
    run_file.write_text(json.dumps(doc))
    after = _rank(sweep, "recall")
    assert after == _rank(sweep, "recall", cache_flag=False) != before


def test_a_changed_val_npz_is_scored_again(sweep, monkeypatch):
    _as_if_old(monkeypatch)
    before = {(r["run"], r["checkpoint"]): r["accuracy"] for r in _rank(sweep, "accuracy")}
    files = sorted((sweep / "fraud").glob("checkpoints/*/val.npz"))
    first, last = files[0], files[-1]
    os.replace(last, last.with_suffix(".bak"))
    last.write_bytes(first.read_bytes())  # the last checkpoint now has the first one's outputs
    after = {(r["run"], r["checkpoint"]): r["accuracy"] for r in _rank(sweep, "accuracy")}
    run = str(sweep / "fraud")
    assert after[(run, last.parent.name)] == before[(run, first.parent.name)] != before[(run, last.parent.name)]
    assert after == {(r["run"], r["checkpoint"]): r["accuracy"] for r in _rank(sweep, "accuracy", cache_flag=False)}


def test_files_too_recent_for_their_stat_are_never_kept(copy_run, tmp_path):
    for name in RUNS:
        copy_run(name, f"sweep/{name}")
    sweep = tmp_path / "sweep"
    _rank(sweep, "accuracy")  # (the copies are milliseconds old: within RACY_NS of the pass)
    book = json.loads((sweep / BOOK_FILE).read_text())
    assert book["files"] == {}
    assert all(not sweepcache.SweepBook(sweep).values(run, key) for key in book["keys"] for run in _runs(sweep))


def _runs(sweep):
    from ckptaudit.store.reader import discover_sweep

    return discover_sweep([sweep])[0]


def test_a_deleted_run_cache_takes_its_values_out_of_the_book(sweep, monkeypatch):
    _as_if_old(monkeypatch)
    _rank(sweep, "accuracy")
    shutil.rmtree(sweep / "digits" / cache.CACHE_DIR)
    outputs = _counted(monkeypatch, sweepcache.derived.CacheWriter, "add")
    assert _rank(sweep, "accuracy") == _rank(sweep, "accuracy", cache_flag=False)
    assert len(outputs) == len(list((sweep / "digits").glob("checkpoints/*/val.npz")))  # (digits scored afresh)


def test_a_damaged_book_is_ignored_and_written_anew(sweep, monkeypatch):
    _as_if_old(monkeypatch)
    cold = _rank(sweep, "recall", cache_flag=False)
    (sweep / BOOK_FILE).write_text('{"version": 1, "files": {"fraud": {"run.json": [[1, 2, 3, 4], ')
    assert _rank(sweep, "recall") == cold
    assert json.loads((sweep / BOOK_FILE).read_text())["version"] == sweepcache.VERSION
    assert _rank(sweep, "recall") == cold


def test_a_book_that_is_a_link_is_not_read_and_its_target_is_left_alone(sweep, monkeypatch, tmp_path):
    _as_if_old(monkeypatch)
    cold = _rank(sweep, "recall", cache_flag=False)
    _rank(sweep, "recall")
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes((sweep / BOOK_FILE).read_bytes())
    (sweep / BOOK_FILE).unlink()
    (sweep / BOOK_FILE).symlink_to(outside)
    before = outside.read_bytes()
    meta_reads = _counted(monkeypatch, sweepcache, "read_json")
    assert _rank(sweep, "recall") == cold
    assert meta_reads  # (the linked book served nothing)
    assert outside.read_bytes() == before and not (sweep / BOOK_FILE).is_symlink()


def test_one_run_keeps_its_values_in_its_own_cache_only(copy_run):
    run = copy_run("fraud")
    _rank(run, "recall")
    assert not (run / BOOK_FILE).exists() and not (run.parent / BOOK_FILE).exists()
