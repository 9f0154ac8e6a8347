"""The ``check`` command: the CI gate."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode
from .application import _emit, _finish
from .options import AddressOpt, Engine, EngineOpt, FailOn, ModeOpt, RemoteCacheOpt, StrictOpt


class CheckFormat(str, Enum):
    text = "text"
    json = "json"
    junit = "junit"
    github = "github"
    markdown = "markdown"


def check(
    path: Annotated[str, typer.Argument(help="The run to gate (a folder or a URL).", show_default=False)],
    metric: Annotated[str | None, typer.Option("--metric", "-m", help="Policy metric spec (overrides the config file).")] = None,
    chosen: Annotated[
        str | None,
        typer.Option(
            "--chosen", help="Checkpoint name or folder, provenance file from `pick`, or a weights file copied out of the run."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Policy file (default: nearest ckptaudit.toml or pyproject.toml [tool.ckptaudit])."),
    ] = None,
    mode: ModeOpt = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Decision threshold (binary and multilabel).")] = None,
    min_value: Annotated[float | None, typer.Option("--min-value", help="The chosen value must be at least this.")] = None,
    max_value: Annotated[float | None, typer.Option("--max-value", help="The chosen value must be at most this.")] = None,
    tolerance: Annotated[float | None, typer.Option("--tolerance", help="How far from the best the chosen may be.")] = None,
    fail_on: Annotated[
        FailOn | None, typer.Option("--fail-on", help="Audit findings at or above this severity fail the gate.")
    ] = None,
    fail_codes: Annotated[
        list[str] | None, typer.Option("--fail-code", help="Only these finding codes fail the gate (repeatable).")
    ] = None,
    resamples: Annotated[int | None, typer.Option("--resamples", help="Paired-bootstrap resamples (at least 100).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the bootstrap.")] = None,
    require_best: Annotated[
        bool,
        typer.Option(
            "--require-best",
            help="chosen-is-best requires the best (within --tolerance), not just one that cannot be told apart from it.",
        ),
    ] = False,
    fmt: Annotated[CheckFormat, typer.Option("--format", "-f", help="Output format.")] = CheckFormat.text,
    allow_unchosen: Annotated[
        bool | None,
        typer.Option(
            "--allow-unchosen", help="Pass (skip chosen-is-best) when no checkpoint is chosen; by default that fails the gate."
        ),
    ] = None,
    strict: StrictOpt = False,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="The deployed model's predictions (checkpoint folder, run with a chosen checkpoint, or val.npz on the same "
            "rows): report negative flips per slice and gate on max_negative_flip_rate / max_slice_regression.",
        ),
    ] = None,
    max_negative_flip_rate: Annotated[
        float | None, typer.Option("--max-negative-flip-rate", help="Most rows (share) the baseline got right that may flip.")
    ] = None,
    max_slice_regression: Annotated[
        float | None, typer.Option("--max-slice-regression", help="Most any slice's accuracy may drop from the baseline's.")
    ] = None,
    engine: EngineOpt = Engine.local,
    address: AddressOpt = None,
    cache: RemoteCacheOpt = False,
) -> None:
    """CI gate: fail when the shipped checkpoint is not the best under the metric that matters.

    Exit 0 pass, 1 gate failed, 2 usage error or unreadable input.
    """
    from ..store.remote import READING  # NOTE: --cache keeps the copies of runs given as URLs

    READING.keep_cache(cache)
    from ..auditing.finding import check_codes
    from ..config import resolve_policy
    from ..engines import use as use_engine
    from ..gate import check as run_gate
    from ..render import render
    from ..views import gate_document

    policy = resolve_policy(
        config,
        metric=metric,
        mode=mode,
        threshold=threshold,
        min_value=min_value,
        max_value=max_value,
        tolerance=tolerance,
        fail_on=None if fail_on is None else fail_on.value,
        fail_codes=check_codes(fail_codes, "--fail-code") or None,
        resamples=resamples,
        seed=seed,
        allow_unchosen=allow_unchosen or None,
        require_best=require_best or None,
        baseline=None if baseline is None else str(baseline),
        max_negative_flip_rate=max_negative_flip_rate,
        max_slice_regression=max_slice_regression,
    )
    with use_engine(engine.value, address):
        result = run_gate(path, policy, chosen)
    _emit(render(gate_document(result), fmt.value))
    _finish((), result.skipped, strict)
    if not result.passed:
        raise typer.Exit(int(ExitCode.FAILED))
