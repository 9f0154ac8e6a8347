"""`ckptaudit report` and `ckptaudit plot`: the data behind the page is right (checked against
scikit-learn and `rank`), the page is one offline file, and the PNG is drawn."""

from __future__ import annotations

import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import ckptaudit
from ckptaudit.cli import app
from ckptaudit.metrics.spec import parse_metric
from ckptaudit.reporting import build_report, reliability_curve, roc_pr_curves, selection_evidence
from ckptaudit.store.reader import discover


@pytest.fixture(scope="module")
def fraud_report(runs_dir):
    return build_report([runs_dir / "fraud"], ["recall", "accuracy", "roc_auc"], resamples=200)


def test_curves_decision_and_winner_agree_with_rank(fraud_report, runs_dir):
    run = fraud_report.runs[0]
    ranked = ckptaudit.rank(runs_dir / "fraud", ["recall", "accuracy", "roc_auc"])
    by_name = ranked.set_index("checkpoint")
    primary = run.charts[0]
    assert primary.primary and primary.metric == "recall" and primary.maximize
    assert [c.name for c in run.checkpoints] == sorted(by_name.index, key=lambda n: by_name.loc[n, "epoch"])
    for ckpt, value in zip(run.checkpoints, primary.series[0].values, strict=True):
        assert value == pytest.approx(by_name.loc[ckpt.name, "recall"], abs=1e-12)
    assert run.winner == ranked.iloc[0]["checkpoint"] == "epoch-0009"
    assert run.chosen == "epoch-0011"
    for row in run.decision:
        best = ranked.sort_values(row.metric, ascending=not row.maximize, kind="mergesort").iloc[0]
        assert row.winner_value == pytest.approx(best[row.metric])
        assert row.chosen_value == pytest.approx(by_name.loc["epoch-0011", row.metric])
        for value, interval in ((row.winner_value, row.winner_interval), (row.chosen_value, row.chosen_interval)):
            assert interval is not None and interval[0] <= value <= interval[1]
    assert run.decision[0].gap == pytest.approx(0.7125 - 0.625)
    # train vs validation of the first metric, and logged train_loss with val_loss on one chart
    assert [s.split for s in primary.series] == ["val", "train"]
    loss = next(c for c in run.charts if c.key == "logged-loss")
    assert [s.label for s in loss.series] == ["train_loss", "val_loss"]
    assert loss.series[1].values[0] == pytest.approx(run.checkpoints[0].logged["val_loss"])


def test_tied_set_and_corrected_estimate_come_from_the_statistics(fraud_report, runs_dir):
    """From ckptaudit.selection when it exists (the statistics module), else from the audit's
    pairwise bootstrap (and then there is no corrected estimate)."""
    run = fraud_report.runs[0]
    raw = discover([runs_dir / "fraud"])[0]
    try:
        from ckptaudit.stats.selection import evaluate_selection
    except ImportError:
        audit = ckptaudit.audit(runs_dir / "fraud", metric="recall", resamples=200).runs[0]
        assert set(run.selection.tied_best) == {"epoch-0009", *audit.tied_with_winner()}
        assert run.selection.corrected is None and "not corrected for multiple comparisons" in run.selection.method
    else:
        sel = evaluate_selection(raw, parse_metric("recall"), resamples=200, seed=0)
        assert run.selection.tied_best == tuple(sel.tied_best) and "epoch-0009" in run.selection.tied_best
        c = run.selection.corrected
        assert c is not None and (c.value, c.low, c.high, c.raw) == (
            sel.estimate.expected,
            *sel.estimate.interval,
            sel.estimate.raw,
        )
        assert c.optimism == pytest.approx(sel.estimate.optimism)
    assert selection_evidence(raw, parse_metric("recall"), None, None).tied_best is None
    codes = [f.code for f in run.findings]
    assert codes[0] == "accuracy-paradox" and set(run.explanations) == set(codes)


def test_findings_are_most_severe_first(fraud_report):
    order = {"error": 0, "warning": 1, "info": 2}
    ranks = [order[f.severity] for f in fraud_report.runs[0].findings]
    assert ranks == sorted(ranks)


def test_diagnostics_match_scikit_learn(fraud_report, runs_dir):
    from sklearn.metrics import confusion_matrix, roc_auc_score

    from ckptaudit.metrics.evaluation import prepare_predictions
    from ckptaudit.store.reader import read_predictions

    raw = discover([runs_dir / "fraud"])[0]
    diags = {d.checkpoint: d for d in fraud_report.runs[0].diagnostics}
    assert set(diags) == {"epoch-0011", "epoch-0009"} and diags["epoch-0011"].roles == ("chosen",)
    for name, d in diags.items():
        prep = prepare_predictions(raw, read_predictions(raw, raw.checkpoint(name)))
        expected = confusion_matrix(prep.y, (prep.proba > 0.5).astype(int), labels=[0, 1])
        assert np.array_equal(np.array(d.confusion), expected)
        assert d.labels == ("legit", "fraud")
        assert d.roc.area == pytest.approx(roc_auc_score(prep.y, prep.proba), abs=1e-12)
        assert len(d.roc.x) <= 200 and d.roc.x[0] == 0 and d.roc.x[-1] == 1 and d.roc.y[-1] == 1


def test_roc_and_pr_points_match_scikit_learn():
    from sklearn.metrics import precision_recall_curve, roc_curve

    rng = np.random.default_rng(3)
    y = (rng.random(150) < 0.3).astype(np.int8)
    score = np.round(rng.random(150) * 0.6 + y * 0.3, 2)  # ties on purpose
    roc, pr = roc_pr_curves(y, score)
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    assert np.allclose(roc.x, fpr, atol=1e-5) and np.allclose(roc.y, tpr, atol=1e-5)
    precision, recall, _ = precision_recall_curve(y, score)
    # scikit-learn lists thresholds ascending and stops once recall reaches 1
    k = len(recall)
    assert np.allclose(pr.x[:k], recall[::-1], atol=1e-5) and np.allclose(pr.y[:k], precision[::-1], atol=1e-5)
    assert roc_pr_curves(np.zeros(5, np.int8), np.linspace(0, 1, 5)) is None


def test_reliability_bins_match_scikit_learn():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(1)
    p = rng.random(500)
    p[:10] = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 0.45, 0.55]  # values on bin edges
    y = (rng.random(500) < p).astype(float)
    predicted, observed, counts = reliability_curve(y, p, bins=10)
    true_sk, pred_sk = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert np.allclose(predicted, pred_sk) and np.allclose(observed, true_sk) and counts.sum() == 500


def test_multiclass_and_regression_diagnostics(runs_dir):
    from sklearn.metrics import confusion_matrix, mean_squared_error

    from ckptaudit.store.reader import read_predictions

    report = build_report([runs_dir / "digits", runs_dir / "friedman"], resamples=200)
    digits, friedman = report.runs
    assert digits.metrics == ("balanced_accuracy",) and friedman.metrics == ("mse",)
    d = digits.diagnostics[0]
    raw = discover([runs_dir / "digits"])[0]
    preds = read_predictions(raw, raw.checkpoint(d.checkpoint))
    assert np.array_equal(np.array(d.confusion), confusion_matrix(preds.target, preds.output.argmax(1), labels=range(10)))
    assert d.reliability.what == "top label" and sum(d.reliability.counts) == preds.n and d.roc is None
    r = friedman.diagnostics[0].residuals
    raw = discover([runs_dir / "friedman"])[0]
    preds = read_predictions(raw, raw.checkpoint(friedman.diagnostics[0].checkpoint))
    assert r.rmse == pytest.approx(np.sqrt(mean_squared_error(preds.target, preds.output)))
    assert r.rows == preds.n and len(r.predicted) == min(preds.n, 400)
    # every drawn residual is a real row's (prediction, target - prediction)
    pairs = {(round(float(p), 4), round(float(t - p), 4)) for t, p in zip(preds.target, preds.output, strict=True)}
    assert all((p, e) in pairs for p, e in zip(r.predicted, r.residual, strict=True))


def test_report_cli_writes_one_offline_page_for_the_sweep(runs_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(runs_dir.parent.parent)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "fixtures/runs", "-o", str(out), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and len(page) < 1_000_000
    # self-contained: no external script, style, image or font
    assert 'Sweep: 10 runs <span class="muted">under fixtures/runs</span>' in page
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    for run in sorted(p.name for p in runs_dir.iterdir()):
        assert f'title="fixtures/runs/{run}">{run}</a>' in page and f"fixtures/runs/{run}</h2>" in page  # sweep row, section


def test_report_notes_a_metric_that_does_not_apply_and_goes_on(runs_dir, tmp_path):
    report = build_report([runs_dir / "fraud", runs_dir / "friedman"], ["recall"], resamples=200)
    fraud, friedman = report.runs
    assert fraud.metrics == ("recall",) and not fraud.notes
    assert friedman.metrics == ("mse",) and "recall" in friedman.notes[0] and not report.problems


def test_report_gate_verdict(runs_dir, tmp_path):
    from ckptaudit.config import Policy

    report = build_report([runs_dir / "fraud"], ["recall"], resamples=200, policy=Policy(metric="recall", resamples=200))
    gate = report.runs[0].gate
    assert gate is not None and not gate.passed
    assert [name for name, *_ in gate.rules][0] == "chosen-is-best"


def test_report_cli_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "no such file" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_plot_png_has_the_expected_size_and_is_drawn(runs_dir, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    out = tmp_path / "curves.png"
    result = CliRunner().invoke(
        app,
        ["plot", str(runs_dir / "fraud"), "--metric", "recall", "-o", str(out), "--width", "8", "--height", "6", "--dpi", "50"],
    )
    assert result.exit_code == 0, result.output
    assert _png_size(out) == (400, 300)
    pixels = matplotlib.image.imread(out)[..., :3]
    assert (pixels < 0.9).any(axis=2).mean() > 0.02  # not blank: lines, text and markers drawn

    def near(hex_color: str) -> int:
        rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
        return int((np.abs(pixels - rgb).max(axis=2) < 0.08).sum())

    assert near("#2563eb") > 100  # the validation line
    assert near("#ea580c") > 10 and near("#16a34a") > 10  # chosen and winner markers


def test_plot_returns_a_figure_with_the_curves(runs_dir):
    pytest.importorskip("matplotlib")
    fig = ckptaudit.plot(runs_dir / "fraud", ["recall", "accuracy"], resamples=200)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title(loc="left").split(" (")[0] for ax in axes][:2] == ["recall", "accuracy"]
    ranked = ckptaudit.rank(runs_dir / "fraud", "recall").sort_values("epoch")
    val = axes[0].get_lines()[0]
    assert np.allclose(val.get_ydata(), ranked["recall"]) and list(val.get_xdata()) == list(ranked["epoch"])


def test_plot_rejects_an_unknown_image_type(runs_dir, tmp_path):
    pytest.importorskip("matplotlib")
    result = CliRunner().invoke(app, ["plot", str(runs_dir / "fraud"), "-m", "recall", "-o", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and "unknown image type" in result.output


def test_cli_start_imports_no_plotting_or_numpy():
    code = "import sys, ckptaudit.cli; print([m for m in ('matplotlib', 'numpy', 'selenium') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _write_run(root, task, output, target, outputs, classes=None, chosen="epoch-0002"):
    """A small run in the run format: one val.npz per entry of ``outputs``."""
    import json

    (root / "checkpoints").mkdir(parents=True)
    spec = {"format": "ckptaudit/1", "task": task, "output": output, "chosen": chosen}
    if classes:
        spec["classes"] = classes
    (root / "run.json").write_text(json.dumps(spec))
    for e, out in enumerate(outputs, start=1):
        ck = root / "checkpoints" / f"epoch-{e:04d}"
        ck.mkdir()
        (ck / "meta.json").write_text(json.dumps({"epoch": e, "logged": {"val_loss": 1.0 / e}}))
        np.savez(ck / "val.npz", target=target, output=out)
    return root


def test_report_handles_label_outputs_and_multilabel(tmp_path):
    rng = np.random.default_rng(0)
    y3 = rng.integers(0, 3, 200)
    yb = rng.integers(0, 2, 200)
    yml = (rng.random((200, 4)) < 0.3).astype(np.int64)
    flip = lambda y, k, p: np.where(rng.random(y.shape) < p, (y + 1) % k, y)  # noqa: E731
    _write_run(tmp_path / "mc-label", "multiclass", "label", y3, [flip(y3, 3, p) for p in (0.5, 0.2, 0.3)], ["a", "b", "c"])
    _write_run(tmp_path / "bin-label", "binary", "label", yb, [flip(yb, 2, p) for p in (0.4, 0.1, 0.2)])
    _write_run(
        tmp_path / "ml",
        "multilabel",
        "probability",
        yml,
        [np.clip(yml * 0.5 + rng.random((200, 4)) * s, 0, 1) for s in (0.9, 0.5, 0.7)],
    )
    report = build_report([tmp_path], resamples=100)
    by = {r.name.rsplit("/", 1)[-1]: r for r in report.runs}
    assert not report.problems
    assert by["mc-label"].diagnostics[0].labels == ("a", "b", "c") and by["mc-label"].diagnostics[0].reliability is None
    assert by["bin-label"].diagnostics[0].roc is None and by["bin-label"].diagnostics[0].confusion is not None
    ml = by["ml"].diagnostics[0]
    assert ml.confusion is None and ml.reliability.what == "all labels" and sum(ml.reliability.counts) == 800
    assert all(r.winner == "epoch-0002" for r in report.runs)  # the least noisy checkpoint wins everywhere
    from ckptaudit.render.html import render_report

    assert render_report(report).count('<svg class="curve"') == sum(len(r.charts) for r in report.runs)


def test_unreadable_checkpoint_is_shown_and_exits_2(tmp_path):
    y = np.arange(300) % 2
    run = _write_run(
        tmp_path / "run", "binary", "probability", y, [np.where(y, 0.6, 0.4), np.where(y, 0.9, 0.1), np.full(300, 0.5)]
    )
    (run / "checkpoints" / "epoch-0003" / "val.npz").write_bytes(b"not a zip file")
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(out), "--resamples", "100"])
    assert result.exit_code == 2 and "epoch-0003" in result.output and "Traceback" not in result.output
    page = out.read_text()
    assert "Could not read" in page and "epoch-0003/val.npz: unreadable" in page and "epoch-0002" in page
    assert result.output.count("ckptaudit: error:") == 1


def test_report_cli_gate_flag(runs_dir, tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        app, ["report", str(runs_dir / "fraud"), "-m", "recall", "--gate", "-o", str(out), "--resamples", "100"]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "Gate (recall): FAILED" in page and "chosen-is-best" in page


def test_a_corrected_estimate_is_drawn_when_available(fraud_report):
    """The statistics module will fill Selection.corrected; the page and the plot draw it."""
    from dataclasses import replace

    from ckptaudit.plotting import plot_report
    from ckptaudit.render.html import render_report
    from ckptaudit.reporting import CorrectedEstimate

    run = fraud_report.runs[0]
    without = replace(fraud_report, runs=(replace(run, selection=replace(run.selection, corrected=None)),))
    before = render_report(without)
    assert '<g class="corrected">' not in before and "No selection-corrected estimate" in before
    corrected = CorrectedEstimate(value=0.655, low=0.58, high=0.72, raw=0.7125, method="test")
    report = replace(fraud_report, runs=(replace(run, selection=replace(run.selection, corrected=corrected)),))
    page = render_report(report)
    primary = re.search(r'<svg class="curve"[^>]*data-chart="metric-0".*?</svg>', page, re.DOTALL).group(0)
    assert '<g class="corrected">' in primary and "0.655 [0.58, 0.72]" in primary
    assert "expected on new data" in page and "optimism 0.0575" in page
    pytest.importorskip("matplotlib")
    fig = plot_report(report)
    assert "expected on new data" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_report_needs_neither_torch_nor_matplotlib_and_plot_says_what_it_needs(runs_dir, tmp_path):
    block = "import sys; sys.modules['torch'] = sys.modules['matplotlib'] = None; from ckptaudit.cli import run; sys.argv = ['ckptaudit'] + sys.argv[1:]; run()"
    page = tmp_path / "r.html"
    ok = subprocess.run(
        [sys.executable, "-c", block, "report", str(runs_dir / "fraud"), "-o", str(page), "--resamples", "100"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert page.stat().st_size > 10_000
    png = tmp_path / "c.png"
    no_mpl = subprocess.run(
        [sys.executable, "-c", block, "plot", str(runs_dir / "fraud"), "-m", "recall", "-o", str(png)],
        capture_output=True,
        text=True,
    )
    assert no_mpl.returncode == 2 and "pip install 'ckptaudit[plot]'" in no_mpl.stderr and "Traceback" not in no_mpl.stderr
    assert not png.exists()


def test_plot_of_a_sweep_mixing_tasks_draws_one_panel_per_metric(runs_dir):
    """A regression run in a sweep ranked by recall is shown by mse: its values (~thousands)
    get an mse panel of their own, never the recall axis (issue 17)."""
    pytest.importorskip("matplotlib")
    fig = ckptaudit.plot([runs_dir / "fraud", runs_dir / "friedman"], "recall", resamples=100)
    by_title = {ax.get_title(loc="left"): ax for ax in fig.axes if ax.get_visible()}
    recall = next(ax for t, ax in by_title.items() if t.startswith("recall"))
    mse = next(ax for t, ax in by_title.items() if t.startswith("mse"))
    assert max(max(line.get_ydata(), default=0) for line in recall.get_lines()) <= 1.0
    assert max(max(line.get_ydata(), default=0) for line in mse.get_lines()) > 1.0
    labels = {line.get_label() for line in recall.get_lines()}
    assert not any("friedman" in str(label) for label in labels)


@pytest.mark.parametrize("bins", [1, 2, 10, 15, 33])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reliability_bins_are_the_binary_search_ones(bins, dtype, monkeypatch):
    """Issue 21: each value's reliability bin comes from its product with the bin count,
    mended beside an edge: the bins a binary search among the inner edges gives, edges
    themselves, their neighbours and values outside [0, 1] included."""
    from ckptaudit.diagnostics import _bin_ids

    edges = np.linspace(0.0, 1.0, bins + 1)
    rng = np.random.default_rng(bins)
    p = np.r_[rng.random(50_000), edges, np.nextafter(edges, 2), np.nextafter(edges, -1), -0.5, 1.5].astype(dtype)
    np.testing.assert_array_equal(_bin_ids(p, edges), np.searchsorted(edges[1:-1], p))
    from ckptaudit import diagnostics

    monkeypatch.setattr(diagnostics, "_BIN_BLOCK", 999)  # many blocks, the last one short
    np.testing.assert_array_equal(_bin_ids(p, edges), np.searchsorted(edges[1:-1], p))
