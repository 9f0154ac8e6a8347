"""The gate's policy: from ``[tool.ckptaudit]`` in pyproject.toml or a ``ckptaudit.toml``,
found from the working directory upward, with command-line options overriding the file.

Every key is documented in docs/check.md. Unknown keys are an error, so a typo cannot
silently turn a rule off.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .safeio import read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "ckptaudit.toml"
FAIL_LEVELS = ("info", "warning", "error", "never")


@dataclass(frozen=True)
class Policy:
    """What the gate enforces."""

    metric: str | None = None  #: metric spec that matters, e.g. "recall:class=fraud"
    mode: str | None = None  #: direction for logged or custom metrics
    threshold: float | None = None  #: decision threshold, added to the metric spec
    min_value: float | None = None  #: the chosen value must be at least this
    max_value: float | None = None  #: the chosen value must be at most this (for min metrics)
    tolerance: float = 0.0  #: how far below the best the chosen may be and still count as the best
    fail_on: str = "error"  #: audit findings at or above this severity fail the gate
    fail_codes: tuple[str, ...] | None = None  #: only these finding codes can fail the gate (default: all)
    resamples: int = 1000
    seed: int = 0
    source: str | None = None  #: the config file the policy came from, if any

    def metric_spec(self) -> str:
        """The metric spec text with the threshold folded in."""
        if self.metric is None:
            raise ConfigError("no metric: pass --metric or set `metric` in ckptaudit.toml / [tool.ckptaudit]")
        if self.threshold is None:
            return self.metric
        sep = "," if "=" in self.metric.split(":", 1)[-1] and ":" in self.metric else ":"
        return f"{self.metric}{sep}threshold={self.threshold:g}"


_KEYS = {f.name for f in fields(Policy)} - {"source"}


def find_config(start: Path | None = None) -> Path | None:
    """The nearest ckptaudit.toml, or pyproject.toml with a [tool.ckptaudit] table, from
    ``start`` (default: the working directory) upward."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(read_text(pyproject, ConfigError))
            except (OSError, ConfigError, tomllib.TOMLDecodeError, RecursionError):
                continue
            tool = data.get("tool")
            if isinstance(tool, dict) and "ckptaudit" in tool:
                return pyproject
    return None


def _coerce(path: Path, key: str, value: Any) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"`{key}` must be {expected}, got {value!r}", path)

    if key in ("metric", "mode", "fail_on"):
        if not isinstance(value, str):
            raise bad("a string")
        if key == "mode" and value not in ("max", "min"):
            raise bad("'max' or 'min'")
        if key == "fail_on" and value not in FAIL_LEVELS:
            raise bad(f"one of {', '.join(FAIL_LEVELS)}")
        return value
    if key in ("threshold", "min_value", "max_value", "tolerance"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if key in ("resamples", "seed"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if key == "fail_codes":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of finding codes")
        from .findings import CODES

        unknown = [v for v in value if v not in CODES]
        if unknown:
            raise ConfigError(f"`fail_codes` names unknown finding code {', '.join(unknown)}", path)
        return tuple(value)
    raise ConfigError(f"unknown key `{key}` (known: {', '.join(sorted(_KEYS))})", path)


def load_policy(path: Path) -> Policy:
    """Read a policy from ckptaudit.toml (top-level keys) or pyproject.toml ([tool.ckptaudit])."""
    try:
        data = tomllib.loads(read_text(path, ConfigError))
    except FileNotFoundError:
        raise ConfigError("no such config file", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML: {exc}", path) from None
    except RecursionError:
        raise ConfigError("malformed TOML: nested too deeply", path) from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise ConfigError(f"`tool` must be a table ([tool.ckptaudit]), got {tool!r}", path)
        table = tool.get("ckptaudit", {})
    else:
        table = data
    if not isinstance(table, dict):
        raise ConfigError("[tool.ckptaudit] must be a table", path)
    values = {key: _coerce(path, key, value) for key, value in table.items()}
    return Policy(**values, source=str(path))


def resolve_policy(config: Path | None = None, **overrides: Any) -> Policy:
    """The policy from ``config`` (or the nearest config file), with non-None ``overrides``
    (command-line options) taking precedence."""
    path = config if config is not None else find_config()
    policy = load_policy(path) if path is not None else Policy()
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - _KEYS
    if unknown:
        raise ConfigError(f"unknown policy option {', '.join(sorted(unknown))}")
    if "fail_codes" in changes:
        changes["fail_codes"] = tuple(changes["fail_codes"])
    return replace(policy, **changes)
