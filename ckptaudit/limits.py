"""The bounds on what one command may read or compute, named once.

Every input that could make a command run without end or exhaust memory (a sparse
``run.json`` of gigabytes, an endless line in a CSV, a million-bin calibration error, a
billion bootstrap resamples) is refused against one of these bounds with a one-line
error, before the work starts. The bounds lie far above any real use; the file bounds can
be raised through the environment. Standard library only: the CLI imports this at start.
"""

from __future__ import annotations

import os

from .errors import UsageError

#: the environment variable that sets how many bytes one JSON or TOML file may hold
MAX_JSON_ENV = "CKPTAUDIT_MAX_JSON_BYTES"
#: run.json, meta.json, trainer_state.json, policy and provenance files: a few kB in practice
DEFAULT_MAX_JSON_BYTES = 64 << 20
#: a metrics log (Lightning metrics.csv, Keras CSVLogger) is streamed; it may hold at most
#: this many bytes in all ...
MAX_CSV_BYTES = 1 << 30
#: ... and at most this many characters on one line (a file of NUL bytes has no line end)
MAX_CSV_LINE = 1 << 20
#: bootstrap resamples: the least that gives a usable 95% interval, and the most that
#: still adds precision (the Monte Carlo error of a 95% quantile at 100,000 resamples is
#: about 0.07% of the spread; memory and time grow linearly beyond)
MIN_RESAMPLES = 100
MAX_RESAMPLES = 100_000
#: equal-width bins of the expected calibration error (10 to 20 is usual; more bins than
#: this leave nearly every bin empty and cost memory per bin)
MAX_ECE_BINS = 10_000


def max_json_bytes() -> int:
    """The most bytes one JSON or TOML file may hold (``CKPTAUDIT_MAX_JSON_BYTES``)."""
    raw = os.environ.get(MAX_JSON_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_JSON_BYTES
    try:
        value = int(raw.strip())
    except ValueError:
        raise UsageError(f"{MAX_JSON_ENV} must be a number of bytes, got {raw!r}") from None
    if value < 1:
        raise UsageError(f"{MAX_JSON_ENV} must be positive, got {raw!r}")
    return value


def resamples_problem(value: object, least: int = MIN_RESAMPLES) -> str | None:
    """None when ``value`` is a valid number of bootstrap resamples, else what it must be."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_RESAMPLES:
        return f"an integer from {least} to {MAX_RESAMPLES:,}"
    return None


def check_resamples(value: object, option: str = "--resamples", least: int = MIN_RESAMPLES) -> int:
    """``value`` when it is a valid number of bootstrap resamples; else :class:`UsageError`."""
    problem = resamples_problem(value, least)
    if problem is not None:
        raise UsageError(f"{option} must be {problem}, got {value!r}")
    assert isinstance(value, int)
    return value
