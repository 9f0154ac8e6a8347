"""The report's embedded data (issue 18 §17): a checkpoint, class or logged-metric name
holding ``<!--<script>`` must not put the HTML parser into the script data double-escaped
state, where the ``<script type="application/json">`` block swallows report.js and every
tooltip, link and table of the page is dead. Checked on the page's text, and in a real
headless Chromium where one is installed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import ckptaudit
from ckptaudit.render.html.page import embedded_json
from tests.test_report_browser import CHROMEDRIVER, CHROMIUM, _no_errors, _open, browser  # noqa: F401 - browser: a fixture

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"
HOSTILE = "<!--<script>"


def hostile_run(tmp_path: Path) -> Path:
    """The fraud run with ``<!--<script>`` in a checkpoint's name, a class name and a
    logged metric's name."""
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    data = json.loads((run / "run.json").read_text())
    data["classes"] = ["legit", f"fraud{HOSTILE}"]
    (run / "run.json").write_text(json.dumps(data))
    old = run / "checkpoints" / "epoch-0005"
    new = run / "checkpoints" / f"epoch-0005{HOSTILE}"
    old.rename(new)
    meta = json.loads((new / "meta.json").read_text())
    meta.setdefault("logged", {})[f"val_{HOSTILE}"] = 0.5
    (new / "meta.json").write_text(json.dumps(meta))
    return run


def data_block(page: str) -> str:
    m = re.search(r'<script type="application/json" id="ckpt-data">(.*?)</script>', page, re.S)
    assert m is not None
    return m.group(1)


def test_embedded_json_holds_no_markup_and_parses_back() -> None:
    value = {"name": "a</script><!--<script>&amp;>", "n": [1, 2.5, None]}
    text = embedded_json(value)
    assert not set("<>&") & set(text)
    assert json.loads(text) == value


def test_hostile_names_stay_inside_the_data_block(tmp_path: Path) -> None:
    page_path = tmp_path / "page.html"
    ckptaudit.report(str(hostile_run(tmp_path)), ["recall"], output=page_path, resamples=100)
    page = page_path.read_text(encoding="utf-8")
    block = data_block(page)
    # NOTE: the parser ends the block at its first "</script"; the data must not hold "<"
    # at all ("<!--" then "<script" would make that first "</script" not end it).
    assert "<" not in block
    assert f"epoch-0005{HOSTILE}" in json.dumps(json.loads(block), ensure_ascii=False)
    # the page's script comes right after the data block, whole
    assert page.index('id="ckpt-data"') < page.rindex("<script>") < page.rindex("</script></body>")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_the_page_with_hostile_names_still_runs_its_script_in_a_browser(browser, tmp_path: Path) -> None:  # noqa: F811
    page = tmp_path / "page.html"
    report = ckptaudit.report(str(hostile_run(tmp_path)), ["recall"], output=page, resamples=100)
    _open(browser, page)
    # report.js ran: it builds the checkpoint table on demand, one row per checkpoint
    browser.execute_script("document.querySelector('details.all').open = true")
    rows = browser.find_elements("css selector", "details.all tbody tr")
    assert len(rows) == len(report.runs[0].checkpoints) == 20
    assert any(f"epoch-0005{HOSTILE}" in row.text for row in rows)
    _no_errors(browser)
