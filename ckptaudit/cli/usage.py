"""Usage errors (a bad option value, a missing argument) as ONE line, worded the same on
every admitted typer.

typer/click print four lines (usage, a hint, a blank line, the error) and, since typer
validates through pydantic, pydantic's wording ("Value error, ...", "Input should be greater
than or equal to 1"). Older typers word the same errors click's way ("0 is not in the range
x>=1."). :func:`one_line` turns either into ``ckptaudit: error: --top: must be at least 1
(see 'ckptaudit rank --help')``. Only the text is read (``format_message()``, ``ctx``,
``param``: click's public exception API), so a new wording can only read less tidily here,
never change the exit code (always 2).
"""

from __future__ import annotations

import re
from typing import Any

# click's "601 is not in the range 20<=x<=600" / "0 is not in the range x>=1"; pydantic's two
_RANGE = re.compile(r"^'?(-?[0-9.eE+]+)'? is not in the range (?:(-?[0-9.]+)<=)?x(?:>=(-?[0-9.]+))?(?:<=(-?[0-9.]+))?$")
_AT_LEAST = re.compile(r"^Input should be greater than or equal to (-?[0-9.]+)$")
_AT_MOST = re.compile(r"^Input should be less than or equal to (-?[0-9.]+)$")


def _number(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


def _value_detail(detail: str) -> str:
    """The reason a value was refused, in one wording whatever typer produced it."""
    detail = detail.strip()
    if detail.startswith("Value error, "):
        detail = detail[len("Value error, ") :]
    detail = detail.rstrip(".")
    if m := _AT_LEAST.match(detail):
        return f"must be at least {_number(m.group(1))}"
    if m := _AT_MOST.match(detail):
        return f"must be at most {_number(m.group(1))}"
    if m := _RANGE.match(detail):
        value, low, low_only, high = m.groups()
        low = low or low_only
        if high is not None and (low is None or float(value) > float(high)):
            return f"must be at most {_number(high)}"
        if low is not None:
            return f"must be at least {_number(low)}"
    if "valid integer" in detail:  # "Input should be a valid integer, ..." / "'x' is not a valid integer[ range]"
        return "must be a whole number"
    if "valid number" in detail or "valid float" in detail:
        return "must be a number"
    return detail


def _names(text: str) -> list[str]:
    return re.findall(r"'?(--?[A-Za-z0-9][A-Za-z0-9-]*)'?", text)


def _detail(exc: Any) -> str:
    """The error itself, without click's usage lines."""
    message = str(exc.format_message()).strip().splitlines()[0] if str(exc.format_message()).strip() else "usage error"
    kind = type(exc).__name__
    param = getattr(exc, "param", None)
    if kind == "MissingParameter" or message.startswith(("Missing option", "Missing argument", "Missing parameter")):
        if param is not None and getattr(param, "param_type_name", "") == "argument":
            return f"missing argument {str(param.name).upper()}"
        if param is not None and getattr(param, "opts", None):
            return f"missing option {param.opts[0]}"
        return message[0].lower() + message[1:].rstrip(".").replace("'", "")
    if m := re.match(r"^Invalid value for (.+?): (.*)$", message, re.S):
        names = _names(m.group(1))
        hint = names[0] if names else m.group(1).strip("'")
        if param is not None and getattr(param, "param_type_name", "") == "argument":
            hint = str(param.name).upper()
        return f"{hint}: {_value_detail(m.group(2))}"
    if m := re.match(r"^No such option:? '?(--?[^' ]+)'?\.?(.*)$", message):
        suggestions = _names(m.group(2))
        hint = f" (did you mean {' or '.join(suggestions)}?)" if suggestions else ""
        return f"no such option {m.group(1)}{hint}"
    if m := re.match(r"^No such command '?([^']*)'?\.?", message):
        return f"no such command {m.group(1)!r}"
    message = re.sub(r"'(--?[A-Za-z0-9][A-Za-z0-9-]*)'", r"\1", message)  # "option '--top' ..." as "option --top ..."
    return message[0].lower() + message[1:].rstrip(".")


def one_line(exc: Any) -> str:
    """``exc`` (a click ``UsageError``/``BadParameter``) as the one line ckptaudit prints."""
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "ckptaudit"
    detail = _detail(exc)
    if detail == "missing argument CODE" and command.split()[-1:] == ["explain"]:
        from ..auditing.rules import CODES

        detail += f" (a finding code: {', '.join(CODES)})"
    return f"ckptaudit: error: {detail} (see '{command} --help')"
