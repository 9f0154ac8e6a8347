"""The gate's policy: from ``[tool.ckptaudit]`` in pyproject.toml or a ``ckptaudit.toml``,
found from the working directory upward, with command-line options overriding the file.

Every key is documented in docs/check.md. Unknown keys are an error, so a typo cannot
silently turn a rule off.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .limits import resamples_problem
from .store.safeio import read_text

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
    allow_unchosen: bool = False  #: pass chosen-is-best (skipped) when no checkpoint is chosen
    require_best: bool = (
        False  #: chosen-is-best requires the best (within tolerance), not just a checkpoint that cannot be told apart from it
    )
    #: churn (docs/slices.md): the deployed model's predictions (a checkpoint folder, a run
    #: with a chosen checkpoint, or a val.npz), and the limits the candidate must meet
    baseline: str | None = None
    max_negative_flip_rate: float | None = None
    max_slice_regression: float | None = None
    source: str | None = None  #: the config file the policy came from, if any

    def metric_spec(self) -> str:
        """The metric spec text with the threshold folded in."""
        if self.metric is None:
            raise ConfigError("no metric: pass --metric or set `metric` in ckptaudit.toml / [tool.ckptaudit]")
        if self.threshold is None:
            return self.metric
        sep = "," if "=" in self.metric.split(":", 1)[-1] and ":" in self.metric else ":"
        # every digit when :g would round it (a tuned threshold read from a provenance file)
        shown = f"{self.threshold:g}"
        return f"{self.metric}{sep}threshold={shown if float(shown) == self.threshold else repr(self.threshold)}"


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


def _check_value(key: str, value: Any) -> tuple[Any, str | None]:
    """``(value, None)`` when ``value`` is valid for ``key`` (coerced), else ``(None, what
    it must be)``. One rule for the config file, the options and the Python API."""
    if key in ("metric", "mode", "fail_on"):
        if not isinstance(value, str) or not value.strip():
            return None, "a non-empty string"
        if key == "mode" and value not in ("max", "min"):
            return None, "'max' or 'min'"
        if key == "fail_on" and value not in FAIL_LEVELS:
            return None, f"one of {', '.join(FAIL_LEVELS)}"
        return value, None
    if key in ("threshold", "min_value", "max_value", "tolerance"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, "a number"
        number = float(value)
        # NOTE: NaN compares false with everything, so `min_value = nan` would pass any value.
        if not math.isfinite(number):
            return None, "a finite number"
        if key == "threshold" and not 0.0 <= number <= 1.0:
            return None, "a probability in [0, 1]"
        if key == "tolerance" and number < 0:
            return None, "a number >= 0"
        return number, None
    if key in ("resamples", "seed"):
        if isinstance(value, bool) or not isinstance(value, int):
            return None, "an integer"
        if key == "resamples" and resamples_problem(value) is not None:
            return None, resamples_problem(value)
        if key == "seed" and value < 0:
            return None, "an integer >= 0"
        return value, None
    if key in ("max_negative_flip_rate", "max_slice_regression"):  # churn (docs/slices.md)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            return None, "a number in [0, 1]"
        return float(value), None
    if key == "baseline":
        if not isinstance(value, str) or not value.strip():
            return None, "a path"
        return value, None
    if key in ("allow_unchosen", "require_best"):
        if not isinstance(value, bool):
            return None, "true or false"
        return value, None
    if key == "fail_codes":
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, "a list of finding codes"
        from .auditing.rules import CODES

        unknown = [v for v in value if v not in CODES]
        if unknown:
            return None, f"a list of finding codes (unknown: {', '.join(unknown)})"
        return tuple(value), None
    raise ConfigError(f"unknown key `{key}` (known: {', '.join(sorted(_KEYS))})")


def _coerce(path: Path, key: str, value: Any) -> Any:
    if key not in _KEYS:
        raise ConfigError(f"unknown key `{key}` (known: {', '.join(sorted(_KEYS))})", path)
    if key == "fail_codes" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        from .auditing.rules import CODES

        unknown = [v for v in value if v not in CODES]
        if unknown:
            raise ConfigError(f"`fail_codes` names unknown finding code {', '.join(unknown)}", path)
    checked, expected = _check_value(key, value)
    if expected is not None:
        raise ConfigError(f"`{key}` must be {expected}, got {value!r}", path)
    return checked


def _check_bounds(policy: Policy) -> Policy:
    if policy.min_value is not None and policy.max_value is not None and policy.min_value > policy.max_value:
        raise ConfigError(f"min_value {policy.min_value:g} is above max_value {policy.max_value:g}: no value can pass")
    return policy


def load_policy(path: Path) -> Policy:
    """Read a policy from ckptaudit.toml (top-level keys) or pyproject.toml ([tool.ckptaudit])."""
    if not path.exists() and not path.is_symlink():
        raise ConfigError("no such config file", path)
    try:
        # NOTE: read_text refuses a FIFO or device, which would block or never end.
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
    try:
        return _check_bounds(Policy(**values, source=str(path)))
    except ConfigError as exc:
        raise ConfigError(exc.problem, path) from None


def resolve_policy(config: Path | None = None, **overrides: Any) -> Policy:
    """The policy from ``config`` (or the nearest config file), with non-None ``overrides``
    (command-line options) taking precedence."""
    path = config if config is not None else find_config()
    policy = load_policy(path) if path is not None else Policy()
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - _KEYS
    if unknown:
        raise ConfigError(f"unknown policy option {', '.join(sorted(unknown))}")
    for key, value in list(changes.items()):
        checked, expected = _check_value(key, value)
        if expected is not None:
            option = "--" + key.replace("_", "-")
            raise ConfigError(f"{option} must be {expected}, got {value!r}")
        changes[key] = checked
    return _check_bounds(replace(policy, **changes))
