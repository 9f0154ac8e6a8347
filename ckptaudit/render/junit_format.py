"""JUnit XML: one testcase per check, so CI systems show each rule as a test result.

A failed check is a ``<failure>``; an audit finding below ``--fail-on`` passes (its
severity and message in ``<system-out>``), as the exit code says. Characters XML 1.0
cannot hold (most control characters) are written as visible escapes, so the document
always parses."""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET

from . import Check, Document

# NOTE: XML 1.0 allows TAB, LF, CR and everything from U+0020 except surrogates and
# U+FFFE/U+FFFF; ElementTree writes anything else raw, which no parser accepts.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 cannot hold shown as ``\\xNN``/``\\uNNNN``."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text)


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
        suites, "testsuite", name=xml_safe(doc.title), tests=str(len(checks)), failures=str(failures), errors="0", skipped="0"
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname="ckptaudit", name=xml_safe(c.name))
        if c.file:
            case.set("file", xml_safe(c.file))
        message = xml_safe(c.message)
        if not c.ok:
            failure = ET.SubElement(case, "failure", message=message, type=c.severity)
            failure.text = message
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{c.label.lower()}: {message}" if c.label else message
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
