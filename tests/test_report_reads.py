"""`report` is a view of the verdict's one pass: every val.npz is read once (the diagnostics of
the chosen checkpoint and the winner, and the slices' look for a group column, come from that
pass), and what the pass draws is what a fresh read of the checkpoint draws."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from ckptaudit import diagnostics
from ckptaudit.metrics.evaluation import prepare_predictions
from ckptaudit.metrics.prepared import prepare
from ckptaudit.reporting import build_report
from ckptaudit.store import reader
from ckptaudit.store.reader import discover, read_predictions


def _count_reads(monkeypatch) -> Counter[str]:
    """Count every read of a prediction file, by path, until the monkeypatch is undone."""
    reads: Counter[str] = Counter()
    real = reader.read_npz

    def counted(path, *args, **kwargs):
        reads[str(path)] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(reader, "read_npz", counted)
    return reads


@pytest.mark.parametrize(("name", "metrics"), [("fraud", ["recall", "roc_auc"]), ("digits", []), ("friedman", [])])
def test_each_val_file_is_read_once_and_the_diagnostics_are_a_fresh_reads(runs_dir, monkeypatch, name, metrics):
    reads = _count_reads(monkeypatch)
    report = build_report([runs_dir / name], metrics, resamples=200)
    monkeypatch.undo()
    run = discover([runs_dir / name])[0]
    val = {str(c.split_file("val")): n for c in run.checkpoints if c.has_split("val") for n in [reads[str(c.split_file("val"))]]}
    assert val and set(val.values()) == {1}, val
    shown = report.runs[0]
    assert [d.checkpoint for d in shown.diagnostics] == [n for n in dict.fromkeys([shown.chosen, shown.winner]) if n]
    spec = shown.verdict.metrics[0].spec
    for drawn in shown.diagnostics:
        ckpt = run.checkpoint(drawn.checkpoint)
        fresh = diagnostics.diagnose(run, ckpt, drawn.roles, prepare_predictions(run, read_predictions(run, ckpt)), spec)
        assert drawn == fresh


def test_fraud_winner_kept_across_later_reads(runs_dir):
    """The winner (epoch 9) is read before the chosen one (epoch 11) and the later files reuse
    the pass's buffer: the winner's curves are still its own."""
    report = build_report([runs_dir / "fraud"], ["recall"], resamples=200)
    shown = report.runs[0]
    assert (shown.chosen, shown.winner) == ("epoch-0011", "epoch-0009")
    assert [d.roles for d in shown.diagnostics] == [("chosen",), ("winner",)]
    from sklearn.metrics import roc_auc_score

    run = discover([runs_dir / "fraud"])[0]
    for drawn in shown.diagnostics:
        preds = read_predictions(run, run.checkpoint(drawn.checkpoint))
        assert drawn.roc.area == pytest.approx(roc_auc_score(preds.target == run.positive_class, preds.output), abs=1e-12)


def test_multiclass_top_label_in_row_chunks_is_the_whole_matrix(monkeypatch):
    """The top-label reliability of logits, computed a few rows at a time, equals the one of
    the whole softmax, and scikit-learn's calibration curve of it."""
    from scipy.special import softmax
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(3)
    n, c = 1003, 37
    logits = (rng.normal(size=(n, c)) * 3).astype(np.float32)
    y = rng.integers(0, c, size=n)
    whole = diagnostics._reliability(prepare("multiclass", "logit", y, logits, n_classes=c))
    monkeypatch.setattr(diagnostics, "_CHUNK_VALUES", 7 * c)  # 144 chunks, the last one short
    chunked = diagnostics._reliability(prepare("multiclass", "logit", y, logits, n_classes=c))
    assert chunked == whole and chunked.what == "top label"
    p = softmax(logits.astype(np.float64), axis=1)
    observed, predicted = calibration_curve(p.argmax(1) == y, p.max(1), n_bins=10, strategy="uniform")
    assert np.allclose(chunked.predicted, predicted, atol=1e-5) and np.allclose(chunked.observed, observed, atol=1e-5)
    # stored probabilities go the same way
    proba = softmax(logits, axis=1).astype(np.float32)
    stored = diagnostics._reliability(prepare("multiclass", "probability", y, proba, n_classes=c))
    monkeypatch.setattr(diagnostics, "_CHUNK_VALUES", 1 << 22)
    assert stored == diagnostics._reliability(prepare("multiclass", "probability", y, proba, n_classes=c))
    assert sum(stored.counts) == n


def test_the_page_written_in_sections_is_the_page(runs_dir, tmp_path):
    """write_html encodes the page a section at a time: the bytes are render_report's (a run
    name with a lone surrogate included: U+FFFD in both)."""
    import re

    from ckptaudit.render.html import render_report, write_html

    report = build_report([runs_dir / "fraud", runs_dir / "digits"], [], resamples=200)
    report = replace(report, title="sweep \udcff report")
    size = write_html(report, tmp_path / "r.html")
    written = (tmp_path / "r.html").read_bytes()
    whole = render_report(report).encode("utf-8")
    stamp = re.compile(rb"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")
    assert size == len(written) and stamp.sub(b"T", written) == stamp.sub(b"T", whole)
    assert "sweep \ufffd report".encode() in written


def test_a_best_too_large_to_copy_is_read_again_with_the_same_diagnostics(runs_dir, monkeypatch):
    """Issue 21: the pass copies the best output so far only up to COPY_LIMIT; a larger one
    (here: every one) is read once more at the end, and draws the same diagnostics."""
    from ckptaudit.reporting import focus

    kept = build_report([runs_dir / "fraud"], ["recall"], resamples=200).runs[0].diagnostics
    reads = _count_reads(monkeypatch)
    monkeypatch.setattr(focus, "COPY_LIMIT", 0)
    shown = build_report([runs_dir / "fraud"], ["recall"], resamples=200).runs[0]
    assert shown.diagnostics == kept
    run = discover([runs_dir / "fraud"])[0]
    again = {c.name for c in run.checkpoints if reads[str(c.split_file("val"))] == 2}
    assert again == {shown.winner} and shown.winner != shown.chosen  # the chosen one is drawn as it is read
