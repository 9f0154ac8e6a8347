"""The ``audit`` and ``explain`` commands: the findings, and what each code means."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..exitcodes import ExitCode
from .application import _emit, _finish
from .options import AddressOpt, Engine, EngineOpt, FailOn, ModeOpt, PathsArg, RemoteCacheOpt, ResamplesOpt, SeedOpt, StrictOpt


class AuditFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    github = "github"
    junit = "junit"


def audit(
    paths: PathsArg,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric", "-m", help="Audit metric (default: balanced_accuracy for classification, f1 multilabel, mse regression)."
        ),
    ] = None,
    mode: ModeOpt = None,
    fmt: Annotated[AuditFormat, typer.Option("--format", "-f", help="Output format.")] = AuditFormat.table,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 when a finding is at or above this severity.")
    ] = FailOn.error,
    select: Annotated[
        list[str] | None, typer.Option("--select", help="Only these finding codes (comma-separated or repeated).")
    ] = None,
    ignore: Annotated[list[str] | None, typer.Option("--ignore", help="Skip these finding codes.")] = None,
    resamples: ResamplesOpt = 1000,
    seed: SeedOpt = 0,
    imbalance: Annotated[float, typer.Option(help="Majority-class share from which the accuracy paradox is checked.")] = 0.8,
    paradox_lift: Annotated[float, typer.Option(help="Share of the majority baseline's errors a model must remove.")] = 0.5,
    paradox_recall: Annotated[float, typer.Option(help="Minimum recall of the rarest class.")] = 0.5,
    margin: Annotated[
        float,
        typer.Option(help="Margin for val-beats-train and overfitting (absolute for metrics in [0,1], relative otherwise)."),
    ] = 0.02,
    perfect: Annotated[float, typer.Option(help="Accuracy or R2 at or above this is near-perfect.")] = 0.999,
    min_rows: Annotated[int, typer.Option(help="Fewer validation rows than this is a small validation set.")] = 100,
    min_class_rows: Annotated[int, typer.Option(help="Fewer rows of the rarest class than this is a small validation set.")] = 20,
    tie_fraction: Annotated[
        float, typer.Option(help="Share of checkpoints tied with the winner that makes winner-within-noise a warning.")
    ] = 0.3,
    strict: StrictOpt = False,
    engine: EngineOpt = Engine.local,
    address: AddressOpt = None,
    cache: RemoteCacheOpt = False,
) -> None:
    """Flag the accuracy paradox, leakage, overfitting and selection noise, with the numbers.

    Exit 0 when no finding is at or above --fail-on, 1 otherwise, 2 on unreadable input.
    """
    from ..store.remote import READING  # NOTE: --cache keeps the copies of runs given as URLs

    READING.keep_cache(cache)
    from ..auditing import AuditOptions
    from ..auditing.finding import check_codes
    from ..audits import audit_paths
    from ..engines import use as use_engine
    from ..render import render
    from ..views import findings_document

    options = AuditOptions(
        metric=metric,
        mode=mode,
        resamples=resamples,
        seed=seed,
        imbalance=imbalance,
        paradox_lift=paradox_lift,
        paradox_recall=paradox_recall,
        margin=margin,
        perfect=perfect,
        min_rows=min_rows,
        min_class_rows=min_class_rows,
        tie_fraction=tie_fraction,
        select=tuple(check_codes(select, "--select")),
        ignore=tuple(check_codes(ignore, "--ignore")),
    )
    with use_engine(engine.value, address):
        report = audit_paths(paths, options)
    _emit(render(findings_document(report.findings, report.problems, fail_on.value), fmt.value))
    _finish(report.problems, report.skipped, strict)
    if report.failed(fail_on.value):
        raise typer.Exit(int(ExitCode.FAILED))


def explain(code: Annotated[str, typer.Argument(help="A finding code, e.g. accuracy-paradox.")]) -> None:
    """Explain a finding code: what it means, why it matters, benign causes, what to do."""
    from ..auditing.finding import explain as explain_code

    _emit(explain_code(code))
