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


def test_json_is_what_json_dumps_gives_for_a_long_document() -> None:
    """The JSON renderer joins the encoder's pieces a batch at a time (memory, issue 21):
    the same text as ``json.dumps(indent=2)``, across batch boundaries, with non-finite
    numbers as null, non-ASCII escaped, and objects it cannot encode as their text."""
    import json
    import math
    from pathlib import Path

    from ckptaudit.render import Document, json_format

    records = [
        {"run": f"r{i}", "value": i / 7, "nan": math.nan, "inf": -math.inf, "nested": [1, {"é\u2028": None}], "path": Path("/a")}
        for i in range(3000)
    ]
    text = json_format.render(Document("t", (), (), records))
    cleaned = [dict(r, nan=None, inf=None, path="/a") for r in records]
    assert text == json.dumps(cleaned, indent=2) + "\n"
    assert json.loads(text) == json.loads(json.dumps(cleaned))
    assert json_format.render(Document("t", (), (), {})) == "{}\n"
