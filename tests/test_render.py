"""Every renderer formats every kind of document (a table, and pass/fail checks)."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest

from ckptaudit.render import Check, Document, Format, render

TABLE = Document(
    title="t", columns=["a", "b"], rows=[[1, 0.5], ["x|y", None]], records=[{"a": 1, "b": float("nan")}], footer=["summary"]
)
CHECKS = Document(
    title="c",
    columns=["result", "rule"],
    rows=[["PASS", "r1"], ["FAIL", "r2"]],
    records={"passed": False},
    checks=[Check("r1", True, "fine"), Check("r2", False, "bad: 50%, a,b", severity="warning")],
)


@pytest.mark.parametrize("fmt", list(Format))
@pytest.mark.parametrize("doc", [TABLE, CHECKS], ids=["table", "checks"])
def test_every_format_renders_every_document(fmt, doc):
    out = render(doc, fmt)
    assert out.endswith("\n") and out.strip()
    if fmt is Format.json:
        parsed = json.loads(out)
        if doc is TABLE:
            assert parsed == [{"a": 1, "b": None}]  # NaN is not JSON: it becomes null
    if fmt is Format.junit:
        root = ET.fromstring(out.split("\n", 1)[1])
        assert int(root.get("failures")) == (1 if doc is CHECKS else 0)
    if fmt is Format.github and doc is CHECKS:
        assert "::warning title=FAIL r2::bad: 50%25, a,b" in out
    if fmt is Format.csv and doc is TABLE:
        assert out.splitlines()[0] == "a,b"
