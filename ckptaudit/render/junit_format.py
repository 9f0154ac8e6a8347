"""JUnit XML: one testcase per check, so CI systems show each rule as a test result."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from . import Check, Document


def _checks(doc: Document) -> list[Check]:
    # NOTE: documents without verdicts (a ranking) become one passing case per row.
    if doc.checks:
        return list(doc.checks)
    return [Check(name=" ".join(str(v) for v in row[:3]), ok=True, message="") for row in doc.rows]


def render(doc: Document) -> str:
    """A <testsuites> document with one <testsuite> named after the document."""
    checks = _checks(doc)
    failures = sum(not c.ok for c in checks)
    suites = ET.Element("testsuites", name="ckptaudit", tests=str(len(checks)), failures=str(failures))
    suite = ET.SubElement(
        suites, "testsuite", name=doc.title, tests=str(len(checks)), failures=str(failures), errors="0", skipped="0"
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname="ckptaudit", name=c.name)
        if c.file:
            case.set("file", c.file)
        if not c.ok:
            failure = ET.SubElement(case, "failure", message=c.message, type=c.severity)
            failure.text = c.message
        else:
            out = ET.SubElement(case, "system-out")
            out.text = c.message
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
