"""The rule grammar of ``ckptaudit replay --rule``: one rule per text, parsed once.

A rule is a comma-separated list of ``key=value`` options and bare flags, optionally led by
the framework whose semantics it follows (``hf:``, ``keras:``, ``lightning:``)::

    patience=3,min_delta=0.001,mode=min,monitor=val_loss     Lightning EarlyStopping
    keras:patience=2,baseline=0.5                            Keras EarlyStopping
    hf:patience=2,threshold=0.01,save_total_limit=2,load_best_model_at_end
    gl=5          pq=0.5,strip=5,train=train_loss          up=3     Prechelt (1998)
    save_top_k=2,every_n_epochs=1,save_last,monitor=val_loss   Lightning ModelCheckpoint
    keras:save_best_only                                      Keras ModelCheckpoint
    patience=3,ema=0.3                                        any rule on an EMA-smoothed monitor

Exact semantics are in docs/replay.md; :mod:`.rules` applies them. This module only checks
that a text names known options with values of the right type, so a typo is a usage error
(exit 2) that names the option, never a silently ignored setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError, did_you_mean

FAMILIES = ("lightning", "keras", "hf", "prechelt")

#: option -> its type (bool: a bare flag)
_COMMON: dict[str, type] = {"monitor": str, "mode": str, "ema": float, "restore": str}
_OPTIONS: dict[str, dict[str, type]] = {
    "lightning": {
        "patience": int,
        "min_delta": float,
        "check_finite": bool,
        "save_top_k": int,
        "every_n_epochs": int,
        "save_last": bool,
    },
    "keras": {
        "patience": int,
        "min_delta": float,
        "baseline": float,
        "start_from_epoch": int,
        "save_best_only": bool,
    },
    "hf": {
        "patience": int,
        "threshold": float,
        "save_total_limit": int,
        "load_best_model_at_end": bool,
    },
    "prechelt": {"gl": float, "pq": float, "up": int, "strip": int, "train": str},
}


@dataclass(frozen=True)
class RuleSpec:
    """One parsed rule: its text as typed, its family and its options."""

    text: str
    family: str
    options: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """The option ``key``, or ``default`` when the rule does not set it."""
        return self.options.get(key, default)


def parse_rule(text: str) -> RuleSpec:
    """Parse one ``--rule`` text (see the module docstring); UsageError on anything unknown."""
    raw = text.strip()
    if not raw:
        raise UsageError("empty --rule (e.g. --rule patience=3 or --rule gl=5)")
    family = None
    body = raw
    head, sep, rest = raw.partition(":")
    if sep and "=" not in head and "," not in head:
        name = {"pl": "lightning", "lightning": "lightning", "keras": "keras", "hf": "hf"}.get(head.strip().lower())
        if name is None:
            raise UsageError(f"--rule {raw!r}: unknown framework {head!r}; use lightning:, keras: or hf:")
        family, body = name, rest
    pairs: list[tuple[str, str | None]] = []
    for part in body.split(","):
        part = part.strip()
        if not part:
            raise UsageError(f"--rule {raw!r}: an empty option (two commas, or a trailing comma)")
        key, eq, value = part.partition("=")
        pairs.append((key.strip().lower(), value.strip() if eq else None))
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise UsageError(f"--rule {raw!r}: an option is given twice")
    prechelt = {"gl", "pq", "up"} & set(keys)
    if prechelt:
        if family is not None:
            raise UsageError(f"--rule {raw!r}: Prechelt's criteria (gl, pq, up) take no framework prefix")
        if len(prechelt) > 1:
            raise UsageError(f"--rule {raw!r}: give one of gl, pq, up per rule")
        family = "prechelt"
    family = family or "lightning"
    allowed = {**_COMMON, **_OPTIONS[family]}
    options: dict[str, Any] = {}
    for option, given in pairs:
        kind = allowed.get(option)
        if kind is None:
            raise UsageError(f"--rule {raw!r}: {family} rules have no option {option!r}{did_you_mean(option, allowed)}")
        options[option] = _value(raw, option, given, kind)
    _check(raw, family, options)
    return RuleSpec(raw, family, options)


def _value(raw: str, key: str, value: str | None, kind: type) -> Any:
    if kind is bool:
        if value is None or value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise UsageError(f"--rule {raw!r}: {key} is a flag (give it bare, or =true/=false)")
    if value is None or value == "":
        raise UsageError(f"--rule {raw!r}: {key} needs a value ({key}=...)")
    if kind is str:
        return value
    try:
        number = kind(value)
    except ValueError:
        raise UsageError(f"--rule {raw!r}: {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if kind is float and number != number:  # NaN
        raise UsageError(f"--rule {raw!r}: {key} must be a number, got {value!r}")
    return number


def _check(raw: str, family: str, o: dict[str, Any]) -> None:
    """Ranges and combinations the frameworks themselves refuse or that mean nothing."""

    def bad(message: str) -> UsageError:
        return UsageError(f"--rule {raw!r}: {message}")

    if "mode" in o and o["mode"] not in ("min", "max"):
        raise bad(f"mode must be min or max, got {o['mode']!r}")
    if "restore" in o and o["restore"] not in ("best", "last"):
        raise bad(f"restore must be best or last, got {o['restore']!r}")
    if "ema" in o and not 0 < o["ema"] <= 1:
        raise bad("ema is the weight of the newest value, in (0, 1]")
    for key in ("patience", "start_from_epoch", "up"):
        if key in o and o[key] < 0:
            raise bad(f"{key} must be >= 0")
    for key in ("min_delta", "threshold", "gl", "pq"):
        if key in o and o[key] < 0:
            raise bad(f"{key} must be >= 0")
    if "every_n_epochs" in o and o["every_n_epochs"] < 0:
        raise bad("every_n_epochs must be >= 0")
    if "save_top_k" in o and o["save_top_k"] < -1:
        raise bad("save_top_k must be -1 (keep all), 0 or more")
    if "save_total_limit" in o and o["save_total_limit"] < 1:
        raise bad("save_total_limit must be >= 1")
    if "strip" in o and o["strip"] < 1:
        raise bad("strip must be >= 1")
    if "up" in o and o["up"] < 1:
        raise bad("up must be >= 1")
    if family == "prechelt" and "train" in o and "pq" not in o:
        raise bad("train= is the training error of pq only")
    stops = "patience" in o or family == "prechelt"
    keeps = bool({"save_top_k", "save_total_limit", "save_best_only", "every_n_epochs", "save_last"} & set(o))
    if family == "lightning" and ({"every_n_epochs", "save_last"} & set(o)) and "save_top_k" not in o:
        o.setdefault("save_top_k", 1)  # ModelCheckpoint's default
    if family == "hf" and "load_best_model_at_end" in o and "save_total_limit" not in o and "patience" not in o:
        keeps = True  # load_best_model_at_end alone: every checkpoint kept, the best shipped
    if not stops and not keeps:
        raise bad("neither stops nor keeps anything: give patience=, gl=/pq=/up=, or a retention option")
