"""Every renderer escapes every field: hostile names (newlines, workflow commands, control
characters, HTML, Markdown, formulas) cannot inject output; and audit findings below
--fail-on are labelled by severity, never FAIL."""

from __future__ import annotations

import csv
import io
import json
import shutil
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.render import Check, Document, Format, render

runner = CliRunner()

HOSTILE = [
    "epoch-0001\n::error::injected",
    "a\r\n::warning file=x::injected",
    "\x1b[2K\x1b[1GPASS all good",
    "nul\x00bell\x07vt\x0b",
    "<script>alert(1)</script> & [link](http://x) | pipe `code` *bold*",
    '=HYPERLINK("http://x")',
    "100%0A::error::percent",
    "line\u2028separator",
]
DOC = Document(
    title="t\n::error::title",
    columns=["name", "value"],
    rows=[[h, 0.5] for h in HOSTILE],
    records=[{"name": h} for h in HOSTILE],
    checks=[Check(h, i % 2 == 0, h, severity="error", file=h) for i, h in enumerate(HOSTILE)],
    footer=[f"FAILED: {h}" for h in HOSTILE],
)
ROWS_ONLY = Document(title="r", columns=["name"], rows=[[h] for h in HOSTILE], records=[], footer=["end\n::error::x"])


@pytest.mark.parametrize("doc", [DOC, ROWS_ONLY], ids=["checks", "rows"])
def test_github_every_line_is_one_escaped_command(doc):
    out = render(doc, Format.github)
    lines = out.splitlines()
    expected = (len(doc.checks) or len(doc.rows)) + len(doc.footer)
    assert len(lines) == expected  # nothing started a line of its own
    assert all(line.startswith(("::error ", "::warning ", "::notice ")) for line in lines)
    assert "\r" not in out
    if doc is DOC:  # the runner's unescaping gives back the message exactly
        data = lines[0].split("::", 2)[2]
        assert data.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%") == HOSTILE[0]


@pytest.mark.parametrize("doc", [DOC, ROWS_ONLY], ids=["checks", "rows"])
def test_junit_is_valid_xml_holding_every_name(doc):
    out = render(doc, Format.junit)
    assert not any(ord(c) < 32 and c not in "\t\n\r" for c in out)
    root = ET.fromstring(out.split("\n", 1)[1])  # parses: no raw control characters
    names = [case.get("name") for case in root.iter("testcase")]
    if doc is DOC:
        assert names[0] == HOSTILE[0] and "\\x1b" in names[2] and "\\x00" in names[3]
        assert int(root.find("testsuite").get("failures")) == sum(not c.ok for c in DOC.checks)


@pytest.mark.parametrize("doc", [DOC, ROWS_ONLY], ids=["checks", "rows"])
def test_markdown_keeps_one_row_per_item_and_no_markup(doc):
    out = render(doc, Format.markdown)
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + (len(doc.checks) or len(doc.rows))
    cols = 3 if doc.checks else len(doc.columns)
    for line in table:
        unescaped = line.replace("\\|", "")
        assert unescaped.count("|") == cols + 1
    assert "<script>" not in out and "](http" not in out and "\x1b" not in out and "\x00" not in out
    assert "&lt;script&gt;" in out


@pytest.mark.parametrize("fmt", [Format.text, Format.table])
@pytest.mark.parametrize("doc", [DOC, ROWS_ONLY], ids=["checks", "rows"])
def test_terminal_formats_show_control_characters_as_escapes(fmt, doc):
    out = render(doc, fmt)
    assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c == "\u2028" for c in out)
    if fmt is Format.text and doc is DOC:
        lines = out.splitlines()
        assert len(lines) == len(DOC.checks) + len(DOC.footer)
        assert [line.split(" ", 1)[0] for line in lines[: len(DOC.checks)]] == [c.shown for c in DOC.checks]
        assert "\\x1b[2K" in out


def test_csv_round_trips_and_guards_formulas():
    out = render(DOC, Format.csv)
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) == 1 + len(HOSTILE)
    assert [r[0] for r in rows[1:]] == ["'" + h if h.startswith("=") else h for h in HOSTILE]
    assert render(Document("t", ["v"], [["-"], [-0.5]], []), Format.csv) == "v\n-\n-0.5\n"  # numbers untouched


def test_json_round_trips_every_name():
    assert json.loads(render(DOC, Format.json)) == [{"name": h} for h in HOSTILE]


# ---------------------------------------------------------------- end to end: a real folder name


def test_a_checkpoint_named_with_a_newline_cannot_inject_a_workflow_command(copy_run):
    run = copy_run("fraud")
    hostile = "epoch-0009\n::error title=pwned::injected"
    shutil.move(run / "checkpoints" / "epoch-0009", run / "checkpoints" / hostile)
    result = runner.invoke(
        app, ["check", str(run), "-m", "recall", "--chosen", hostile, "--format", "github", "--resamples", "200"]
    )
    assert result.exit_code in (0, 1), result.output
    lines = result.stdout.splitlines()
    assert not any(line.startswith("::error title=pwned") for line in lines)
    assert all(line.startswith(("::error ", "::warning ", "::notice ")) for line in lines)
    junit = runner.invoke(
        app, ["check", str(run), "-m", "recall", "--chosen", hostile, "--format", "junit", "--resamples", "200"]
    )
    ET.fromstring(junit.stdout.split("\n", 1)[1])
    text = runner.invoke(app, ["check", str(run), "-m", "recall", "--chosen", hostile, "--resamples", "200"])
    assert all(line.startswith(("PASS ", "FAIL ", "PASSED:", "FAILED:")) for line in text.stdout.splitlines())


# ---------------------------------------------------------------- warnings are not failures


@pytest.mark.parametrize("fail_on", ["error", "warning", "info", "never"])
def test_audit_labels_findings_by_severity_consistent_with_the_exit_code(runs_dir, fail_on):
    run = runs_dir / "fraud"
    as_json = runner.invoke(app, ["audit", str(run), "--format", "json", "--fail-on", fail_on, "--resamples", "200"])
    findings = json.loads(as_json.stdout)
    order = ["info", "warning", "error"]
    failing = [f for f in findings if fail_on != "never" and order.index(f["severity"]) >= order.index(fail_on)]
    assert {f["severity"] for f in findings} >= {"warning", "info"}  # the run has findings below error
    assert as_json.exit_code == (1 if failing else 0)

    junit = runner.invoke(app, ["audit", str(run), "--format", "junit", "--fail-on", fail_on, "--resamples", "200"])
    root = ET.fromstring(junit.stdout.split("\n", 1)[1])
    assert int(root.find("testsuite").get("failures")) == len(failing) == len(root.findall(".//failure"))
    assert junit.exit_code == as_json.exit_code

    md = runner.invoke(app, ["audit", str(run), "--format", "markdown", "--fail-on", fail_on, "--resamples", "200"]).stdout
    assert md.count("❌ FAIL") == len(failing)
    below = [f for f in findings if f not in failing]
    assert md.count("⚠️ WARNING") == sum(f["severity"] == "warning" for f in below)
    assert md.count("ℹ️ INFO") == sum(f["severity"] == "info" for f in below)

    gh = runner.invoke(app, ["audit", str(run), "--format", "github", "--fail-on", fail_on, "--resamples", "200"]).stdout
    assert gh.count("title=FAIL ") == len(failing) and gh.count("::error ") == sum(f["severity"] == "error" for f in failing)
    assert gh.count("title=WARNING ") == sum(f["severity"] == "warning" for f in below)
