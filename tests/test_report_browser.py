"""The HTML report as a person sees it: opened in a real headless Chromium.

Skipped (not failed) when chromium, chromedriver or selenium is missing; CI installs them
(`apt-get install -y chromium chromium-driver` in .ci/run, selenium in the dev extra).
Screenshots are written to tmp_path, or to $CKPTAUDIT_ARTIFACTS when set, for the record.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import ckptaudit
from ckptaudit.auditing.finding import Finding
from ckptaudit.reporting import Chart, DecisionRow, Report, RunReport, Selection, Series, diagnose
from ckptaudit.store.reader import Checkpoint

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")

# Collects uncaught errors and console.error calls from the first script on.
ERROR_TRAP = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
var _err = console.error;
console.error = function () { window.__errors.push(Array.prototype.join.call(arguments, ' ')); _err.apply(console, arguments); };
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_TRAP})
    yield driver
    driver.quit()


def synthetic_sweep(runs: int, checkpoints: int) -> Report:
    """A sweep of ``runs`` runs of ``checkpoints`` noisy learning curves each, as the report
    data model (no files: this measures the page, not the scoring)."""
    from ckptaudit.metrics import kernels as metrics

    rng = np.random.default_rng(0)
    epochs = np.arange(1, checkpoints + 1)
    out = []
    for r in range(runs):
        ckpts = tuple(Checkpoint(Path(f"r{r}/e{e}"), f"epoch-{e:04d}", int(e), None, {}) for e in epochs)
        recall = 0.8 - 0.5 * np.exp(-epochs / 60) - 0.0002 * epochs + rng.normal(0, 0.01, checkpoints)
        train = recall + 0.0004 * epochs
        acc = 0.95 + 0.02 * (1 - np.exp(-epochs / 80)) + rng.normal(0, 0.003, checkpoints)
        loss = 0.5 * np.exp(-epochs / 90) + 0.1 + rng.normal(0, 0.005, checkpoints)
        best = int(np.argmax(recall))
        chosen = int(np.argmax(acc))
        tied = tuple(c.name for c, v in zip(ckpts, recall, strict=True) if v > recall[best] - 0.015)
        charts = (
            Chart(
                "metric-0",
                "recall",
                "recall",
                True,
                (Series("validation", "val", tuple(recall)), Series("train", "train", tuple(train))),
                True,
            ),
            Chart("metric-1", "accuracy", "accuracy", True, (Series("validation", "val", tuple(acc)),)),
            Chart(
                "logged-loss",
                "loss (logged)",
                None,
                None,
                (Series("train_loss", "train", tuple(loss * 0.8)), Series("val_loss", "val", tuple(loss))),
            ),
        )
        y = rng.integers(0, 2, 2000)
        prep = metrics.Prepared("binary", y.astype(np.int8), np.clip(y * 0.3 + rng.random(2000) * 0.7, 0, 1), None, 2)
        run_name = f"sweep/lr-{r}"
        findings = (
            Finding("winner-within-noise", "warning", run_name, ckpts[best].name, f"{len(tied)} checkpoints are tied"),
            Finding("overfitting", "info", run_name, ckpts[best].name, "validation worsens after its best epoch"),
        )
        decision = tuple(
            DecisionRow(
                m, True, ckpts[int(np.argmax(v))].name, int(np.argmax(v)) + 1, float(v.max()), None, float(v[chosen]), None
            )
            for m, v in (("recall", recall), ("accuracy", acc))
        )
        from ckptaudit.store.reader import Run

        fake_run = Run(Path(run_name), run_name, "binary", "probability", ("neg", "pos"), 1, None, ckpts[chosen].name, ckpts)
        diags = (diagnose(fake_run, ckpts[chosen], ("chosen",), prep), diagnose(fake_run, ckpts[best], ("winner",), prep))
        out.append(
            RunReport(
                name=run_name,
                task="binary",
                selected_by="val_accuracy",
                chosen=ckpts[chosen].name,
                checkpoints=ckpts,
                x=tuple(float(e) for e in epochs),
                x_label="epoch",
                metrics=("recall", "accuracy"),
                charts=charts,
                winner=ckpts[best].name,
                decision=decision,
                selection=Selection(tied, None, "synthetic"),
                findings=findings,
                explanations={},
                diagnostics=diags,
                n_val=2000,
            )
        )
    return Report(runs=tuple(out), metrics=("recall", "accuracy"))


def _artifact(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("CKPTAUDIT_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _open(driver, page: Path) -> float:
    """Load ``page``; returns the seconds until the load event, and checks nothing went wrong."""
    driver.get_log("browser")  # drop anything logged before
    start = time.perf_counter()
    driver.get(page.resolve().as_uri())
    elapsed = time.perf_counter() - start
    assert driver.execute_script("return document.readyState") == "complete"
    _no_errors(driver)
    return elapsed


def _no_errors(driver) -> None:
    """No uncaught script error and no console error since the page was opened."""
    errors = driver.execute_script("return window.__errors")
    assert errors == [], errors
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe


def _charts_drawn(driver) -> dict[str, int]:
    """Every SVG chart has a non-empty box and at least one drawn line of positive length."""
    return driver.execute_script(
        """
        var out = {curve: 0, diag: 0, empty: []};
        document.querySelectorAll('svg.curve, svg.diag').forEach(function (svg, k) {
          var box = svg.getBoundingClientRect();
          var drawn = Array.prototype.some.call(svg.querySelectorAll('path'), function (p) {
            return p.getAttribute('d') && p.getTotalLength() > 0;
          }) || svg.querySelectorAll('.scatter circle').length > 0;
          if (box.width > 0 && box.height > 0 && drawn) out[svg.classList.contains('curve') ? 'curve' : 'diag']++;
          else out.empty.push(k);
        });
        return out;
        """
    )


def _hover(driver, element) -> str:
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    ActionChains(driver).move_to_element(element).perform()
    tip = driver.find_element("id", "tip")
    assert tip.is_displayed()
    return tip.text


def test_fraud_report_loads_draws_marks_and_hovers(browser, runs_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(runs_dir.parent.parent)
    page = tmp_path / "report.html"
    report: Report = ckptaudit.report("fixtures/runs/fraud", ["recall", "accuracy", "roc_auc"], output=page, resamples=200)
    run = report.runs[0]
    _open(browser, page)

    drawn = _charts_drawn(browser)
    assert drawn["empty"] == []
    assert drawn["curve"] == len(run.charts) >= 4  # recall, accuracy, roc_auc and the logged loss
    assert drawn["diag"] == 3  # ROC, precision-recall, reliability
    assert len(browser.find_elements("css selector", "table.confusion")) == 2  # chosen and winner side by side

    # The markers sit at the right epochs: chosen = run.json's (epoch 11), winner = rank's best by recall (epoch 9).
    best = ckptaudit.rank("fixtures/runs/fraud", "recall").iloc[0]
    primary = browser.find_element("css selector", 'svg.curve[data-chart="metric-0"]')
    chosen = primary.find_element("css selector", "g.mark.chosen")
    winner = primary.find_element("css selector", "g.mark.winner")
    assert (chosen.get_attribute("data-checkpoint"), chosen.get_attribute("data-epoch")) == ("epoch-0011", "11")
    assert (winner.get_attribute("data-checkpoint"), winner.get_attribute("data-epoch")) == (
        best["checkpoint"],
        str(best["epoch"]),
    )
    assert len(browser.find_elements("css selector", "g.mark.chosen")) == len(run.charts)
    # Hovering each marker names its checkpoint: the tooltip finds the nearest checkpoint to
    # the mouse, so this also proves each marker is drawn at its checkpoint's epoch.
    text = _hover(browser, chosen)
    assert text.startswith("epoch-0011") and "chosen" in text and "recall" in text
    text = _hover(browser, winner)
    assert text.startswith(best["checkpoint"]) and "best by recall" in text
    # The tied-best set is shaded on the primary chart, and includes the winner.
    assert run.selection.tied_best and best["checkpoint"] in run.selection.tied_best
    assert len(primary.find_elements("css selector", "g.tied rect")) >= 1

    # A finding's checkpoint link pins that checkpoint on the charts.
    link = browser.find_element("css selector", "li.finding a.ck")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    link.click()
    pinned = primary.find_element("css selector", "line.cursor.pinned")
    assert pinned.get_attribute("visibility") == "visible"
    # The checkpoint table is built on demand and lists every checkpoint.
    browser.execute_script("document.querySelector('details.all').open = true")
    rows = browser.find_elements("css selector", "details.all tbody tr")
    assert len(rows) == len(run.checkpoints)

    _no_errors(browser)  # hovering, pinning and the table raised nothing
    shot = _artifact(tmp_path, "report-fraud.png")
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000


def test_sweep_report_links_every_run(browser, runs_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(runs_dir.parent.parent)
    page = tmp_path / "sweep.html"
    report = ckptaudit.report("fixtures/runs", output=page, resamples=200)
    _open(browser, page)
    rows = browser.find_elements("css selector", ".sweep-table tbody tr")
    assert len(rows) == len(report.runs) == 10
    assert _charts_drawn(browser)["empty"] == []
    # each row links to its run's section
    link = rows[3].find_element("css selector", "a")
    link.click()
    assert browser.execute_script("return location.hash") == "#run-3"
    top = browser.execute_script("return document.getElementById('run-3').getBoundingClientRect().top")
    assert abs(top) < 5
    _no_errors(browser)
    browser.save_screenshot(str(_artifact(tmp_path, "report-sweep.png")))


def test_large_sweep_stays_small_and_fast(browser, tmp_path):
    """500 checkpoints x 20 runs: the page stays a few MB, loads in seconds, and hovers."""
    from ckptaudit.render.html import write_html

    page = tmp_path / "large.html"
    size = write_html(synthetic_sweep(runs=20, checkpoints=500), page)
    assert size < 4_000_000, size
    elapsed = _open(browser, page)
    assert elapsed < 10, elapsed
    drawn = _charts_drawn(browser)
    assert drawn["empty"] == [] and drawn["curve"] == 20 * 3
    last = browser.find_elements("css selector", "svg.curve")[-1]
    text = _hover(browser, last)
    assert text.startswith("epoch-")
    _no_errors(browser)
    browser.save_screenshot(str(_artifact(tmp_path, "report-large.png")))
    print(f"large sweep: {size / 1e6:.2f} MB, loaded in {elapsed:.2f} s")
