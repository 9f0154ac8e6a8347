"""The ``ckptaudit`` command line: parse options, call the library, render, exit.

No scoring, auditing or deleting logic lives here. Known errors become one line on
stderr and exit code 2; set ``CKPTAUDIT_DEBUG=1`` to see the full traceback instead.
Reports go to stdout and summaries to stderr, so ``--format json > out.json`` stays clean.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from . import __version__
from .errors import CkptauditError, PruneInterrupted
from .exitcodes import ExitCode

app = typer.Typer(
    name="ckptaudit",
    help="Choose checkpoints after the fact, under any metric, and prove the choice was honest.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: ExitCode = ExitCode.ERROR) -> typer.Exit:
    typer.echo(f"ckptaudit: error: {message}", err=True)
    return typer.Exit(int(code))


def handle_errors(func: F) -> F:
    """Turn library exceptions into one line on stderr and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.environ.get("CKPTAUDIT_DEBUG"):
            return func(*args, **kwargs)
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except PruneInterrupted as exc:
            raise _fail(str(exc), ExitCode.INTERRUPTED) from None
        except CkptauditError as exc:
            for line in getattr(exc, "details", ()):
                typer.echo(f"ckptaudit: error: {line}", err=True)
            raise _fail(str(exc)) from None
        except BrokenPipeError:
            raise _stdout_closed() from None
        except RecursionError:
            raise _fail("input nested too deeply to read (set CKPTAUDIT_DEBUG=1 for the traceback)") from None
        except OSError as exc:  # a read-only run folder, a full disk: say which file and why
            target = exc.filename2 or exc.filename  # a rename or symlink fails at its destination
            where = f"{target}: " if target else ""
            raise _fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            raise _fail("interrupted", ExitCode.INTERRUPTED) from None
        except Exception as exc:  # a bug: still one line, with the way to see more
            raise _fail(f"internal error: {type(exc).__name__}: {exc} (set CKPTAUDIT_DEBUG=1 for the traceback)") from None

    return wrapper  # type: ignore[return-value]


class RankFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


# Shared option aliases, defined once.
PathsArg = Annotated[
    list[Path], typer.Argument(help="Runs, checkpoint folders, or folders holding runs at any depth.", show_default=False)
]
MetricOpt = Annotated[
    list[str],
    typer.Option(
        "--metric",
        "-m",
        help="Metric spec, e.g. recall, recall:class=fraud, f1:average=micro, val_loss (repeatable; the first orders). See `ckptaudit metrics`.",
    ),
]
ModeOpt = Annotated[
    str | None, typer.Option("--mode", help="Direction (max or min) for logged or custom metrics whose direction is not known.")
]


def _stdout_closed() -> typer.Exit:
    """The reader of our output went away (``ckptaudit rank ... | head``): stop quietly,
    as a tool ended by SIGPIPE does, and keep Python from complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return typer.Exit(int(ExitCode.BROKEN_PIPE))


def _emit(text: str) -> None:
    if sys.stdout is None:
        raise _fail("cannot write the output: standard output is closed")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise _stdout_closed() from None
    except OSError as exc:
        raise _fail(f"cannot write the output: {exc.strerror or exc}") from None


StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict", help="Exit 2 when any run or folder was skipped (default: a note on stderr; broken input always exits 2)."
    ),
]


def _report_left_out(problems: Any, skipped: Any) -> None:
    """One line on stderr per broken input and per skipped run or folder."""
    for problem in problems:
        typer.echo(f"ckptaudit: error: {problem}", err=True)
    for item in skipped:
        if item.kind == "skipped":
            typer.echo(f"ckptaudit: skipped: {item}", err=True)


def _finish(problems: Any, skipped: Any, strict: bool) -> None:
    """After the results: one line per broken input (exit 2) and per skipped run or
    folder (a note; exit 2 with --strict). The rule is the same for every command."""
    from .sweep import exit_status

    _report_left_out(problems, skipped)
    if exit_status(problems, [s for s in skipped if s.kind == "skipped"], strict):
        raise typer.Exit(int(ExitCode.ERROR))


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ckptaudit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Choose checkpoints after the fact, under any metric, and prove the choice was honest.

    Exit codes: 0 ok, 1 a gate or finding failed, 2 usage error or unreadable input.
    """


@app.command()
@handle_errors
def rank(
    paths: PathsArg,
    metric: MetricOpt = [],  # noqa: B006 - typer needs a literal default
    mode: ModeOpt = None,
    fmt: Annotated[RankFormat, typer.Option("--format", "-f", help="Output format.")] = RankFormat.table,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Show only the best N rows.")] = None,
    per_run: Annotated[bool, typer.Option("--per-run", help="Show each run's best checkpoint only.")] = False,
    ci: Annotated[
        bool,
        typer.Option(
            "--ci",
            help="Add a 95% bootstrap interval for the first metric, mark the checkpoints that cannot be told apart "
            "from the best, and give each run's winner its value expected on new data.",
        ),
    ] = False,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples for --ci.")] = 1000,
    flags: Annotated[
        bool, typer.Option("--flags", help="Audit the runs (without the bootstrap) and list each row's finding codes.")
    ] = False,
    cache: Annotated[
        bool,
        typer.Option("--cache", help="Read (and keep current) a derived cache of validation outputs in RUN/.ckptaudit-cache."),
    ] = False,
    strict: StrictOpt = False,
) -> None:
    """Re-score every checkpoint under any metric and order them best first.

    Ties go to the earlier epoch. Checkpoints that cannot be scored are listed last with
    the reason; unreadable input still exits 2 after the table is printed.
    """
    from .progress import progress_bar
    from .ranking import rank_checkpoints
    from .render import render
    from .views import ranking_document

    ranking = rank_checkpoints(
        paths, metric, mode=mode, top=top, per_run=per_run, progress=progress_bar("scoring"), cache=cache, ci=ci, resamples=resamples
    )
    ranking = _decorate_ranking(ranking, ci=ci, resamples=resamples, flags=flags)
    _emit(render(ranking_document(ranking, show_ci=ci, show_flags=flags), fmt.value))
    _finish(ranking.problems, ranking.skipped, strict)


def _decorate_ranking(ranking: Any, *, ci: bool, resamples: int, flags: bool) -> Any:
    """Add bootstrap intervals and audit finding codes to a ranking, when asked for."""
    from .ranking import with_flags, with_intervals

    if ci:
        ranking = with_intervals(ranking, resamples=resamples)
    if flags:
        from .auditing import AuditOptions, audit_run

        options = AuditOptions(metric=ranking.specs[0].text, noise=False)
        codes: dict[tuple[str, str], list[str]] = {}
        for run in ranking.runs:
            for finding in audit_run(run, options).findings:
                names = [finding.checkpoint] if finding.checkpoint else [c.name for c in run.checkpoints]
                for name in names:
                    codes.setdefault((run.name, name), []).append(finding.code)
        ranking = with_flags(ranking, codes)
    return ranking


class AuditFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    github = "github"
    junit = "junit"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"
    never = "never"


ResamplesOpt = Annotated[int, typer.Option("--resamples", min=100, help="Paired-bootstrap resamples over validation rows.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap (results are reproducible).")]


@app.command()
@handle_errors
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
) -> None:
    """Flag the accuracy paradox, leakage, overfitting and selection noise, with the numbers.

    Exit 0 when no finding is at or above --fail-on, 1 otherwise, 2 on unreadable input.
    """
    from .auditing import AuditOptions, audit_paths
    from .findings import check_codes
    from .render import render
    from .views import findings_document

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
    report = audit_paths(paths, options)
    _emit(render(findings_document(report.findings, report.problems, fail_on.value), fmt.value))
    _finish(report.problems, report.skipped, strict)
    if report.failed(fail_on.value):
        raise typer.Exit(int(ExitCode.FAILED))


class PickFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


@app.command()
@handle_errors
def pick(
    paths: PathsArg,
    metric: Annotated[str, typer.Option("--metric", "-m", help="Metric spec to choose by.")],
    mode: ModeOpt = None,
    across: Annotated[bool, typer.Option("--across", help="One winner across every run (a sweep), not one per run.")] = False,
    link: Annotated[Path | None, typer.Option("--link", help="Place the winner as a relative symlink at DEST.")] = None,
    copy: Annotated[Path | None, typer.Option("--copy", help="Place a copy of the winner's folder at DEST.")] = None,
    fmt: Annotated[PickFormat, typer.Option("--format", "-f", help="Output format.")] = PickFormat.table,
    resamples: ResamplesOpt = 1000,
    seed: SeedOpt = 0,
    no_pin: Annotated[
        bool, typer.Option("--no-pin", help="Do not pin the placed checkpoint in its run (prune may then delete it).")
    ] = False,
    strict: StrictOpt = False,
) -> None:
    """Choose the best checkpoint (per run, or --across a sweep) and record why.

    With --link or --copy DEST the winner is placed there and DEST.ckptaudit.json records the
    run, checkpoint, metric, value, 95% interval, findings and sha256 of every weights file,
    and the checkpoint is pinned in its run (prune keeps it until `ckptaudit unpin`).
    """
    from .errors import UsageError
    from .picking import choose_report, place
    from .render import render
    from .sweep import exit_status
    from .views import picks_document

    if link is not None and copy is not None:
        raise UsageError("give --link or --copy, not both")
    report = choose_report(paths, metric, mode=mode, across=across, resamples=resamples, seed=seed)
    picks = list(report.picks)
    if link is not None or copy is not None:
        if len(picks) != 1:
            raise UsageError(f"{len(picks)} runs give {len(picks)} winners; place one with --across or name one run")
        if exit_status(report.problems, [s for s in report.skipped if s.kind == "skipped"], strict):
            # NOTE: the best checkpoint may be among what could not be read: place nothing.
            _report_left_out(report.problems, report.skipped)
            raise UsageError("nothing placed: some input could not be read (see above); fix it or name only healthy runs")
        picks = [place(picks[0], link=link, copy=copy, pin=not no_pin)]
    _emit(render(picks_document(picks), fmt.value))
    _finish(report.problems, report.skipped, strict)


class PruneFormat(str, Enum):
    table = "table"
    json = "json"


@app.command()
@handle_errors
def prune(
    paths: PathsArg,
    metric: MetricOpt = [],  # noqa: B006
    keep: Annotated[int, typer.Option("--keep", "-k", min=0, help="Keep the top K checkpoints by each --metric.")] = 3,
    keep_last: Annotated[int, typer.Option("--keep-last", min=0, help="Keep the newest N checkpoints (by epoch).")] = 1,
    keep_every: Annotated[
        int | None, typer.Option("--keep-every", min=1, help="Keep checkpoints whose epoch is divisible by N.")
    ] = None,
    mode: ModeOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really delete (default: dry run).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Only show the plan (the default; accepted for habit).")
    ] = False,
    trash: Annotated[
        Path | None, typer.Option("--trash", help="Move doomed checkpoints into DIR instead of deleting them.")
    ] = None,
    resume_only: Annotated[bool, typer.Option("--resume", help="Only finish what an interrupted prune left in trash.")] = False,
    fmt: Annotated[PruneFormat, typer.Option("--format", "-f", help="Output format.")] = PruneFormat.table,
) -> None:
    """Garbage-collect checkpoints no keep-rule protects (dry run unless --yes).

    Always kept: the top K by each --metric, the newest --keep-last, every --keep-every,
    run.json 'chosen', pinned checkpoints (pick --link/--copy), checkpoints a symbolic link
    in the run points at, checkpoints named by a provenance file in the run, and anything
    that cannot be scored. PATH may be RUN/checkpoints/NAME: only that checkpoint may go.
    Exit 130 when interrupted (the message says what is left and how to resume).
    """
    from .errors import UsageError
    from .pruning import prune as prune_runs
    from .pruning import resume
    from .render import render
    from .views import prune_document

    if dry_run and (yes or resume_only):
        raise UsageError("--dry-run contradicts --yes and --resume")
    if resume_only:
        plans = resume(paths, trash_dir=trash)
    else:
        plans = prune_runs(
            paths, metric, keep=keep, keep_last=keep_last, keep_every=keep_every, mode=mode, yes=yes, trash_dir=trash
        )
    _emit(render(prune_document(plans), fmt.value))


@app.command()
@handle_errors
def unpin(
    checkpoint: Annotated[Path, typer.Argument(help="The pinned checkpoint folder, RUN/checkpoints/NAME.", show_default=False)],
    dest: Annotated[
        Path | None, typer.Option("--dest", help="Remove only the pin written for this export (default: every pin).")
    ] = None,
) -> None:
    """Remove the pins of a checkpoint, so that prune may delete it again.

    `pick --link/--copy` pins the checkpoint it exports; prune keeps pinned checkpoints.
    Exit 2 when the checkpoint had no pin.
    """
    from .store.pins import unpin as unpin_checkpoint

    for pin in unpin_checkpoint(checkpoint, dest=dest):
        _emit(f"unpinned {pin.checkpoint}" + (f" (exported to {pin.dest})" if pin.dest else "") + "\n")


class CheckFormat(str, Enum):
    text = "text"
    json = "json"
    junit = "junit"
    github = "github"
    markdown = "markdown"


@app.command()
@handle_errors
def check(
    path: Annotated[Path, typer.Argument(help="The run to gate.", show_default=False)],
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
) -> None:
    """CI gate: fail when the shipped checkpoint is not the best under the metric that matters.

    Exit 0 pass, 1 gate failed, 2 usage error or unreadable input.
    """
    from .config import resolve_policy
    from .findings import check_codes
    from .gate import check as run_gate
    from .render import render
    from .views import gate_document

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
    )
    result = run_gate(path, policy, chosen)
    _emit(render(gate_document(result), fmt.value))
    _finish((), result.skipped, strict)
    if not result.passed:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command()
@handle_errors
def explain(code: Annotated[str, typer.Argument(help="A finding code, e.g. accuracy-paradox.")]) -> None:
    """Explain a finding code: what it means, why it matters, benign causes, what to do."""
    from .findings import explain as explain_code

    _emit(explain_code(code))


@app.command("metrics")
def list_metrics() -> None:
    """List the built-in metrics, their direction, options and aliases."""
    from tabulate import tabulate

    from .metrics.spec import ALIASES, BUILTINS, OPTIONS

    rows = []
    for name, (direction, family) in BUILTINS.items():
        aliases = ", ".join(sorted(a for a, n in ALIASES.items() if n == name))
        if name == "fbeta":
            aliases = ", ".join(filter(None, [aliases, "f2, f0.5, f<beta>"]))
        rows.append([name, direction, family, ", ".join(sorted(OPTIONS[name])) or "-", aliases or "-"])
    _emit(tabulate(rows, headers=["metric", "best", "needs", "options", "aliases"], tablefmt="simple") + "\n")
    _emit("\nAlso: any name training logged in meta.json (val_loss), and MODULE:FUNCTION:mode=max for your own.\n")


# `report` and `plot` live in their own module (HTML report and static plots).
from .cli_report import register as _register_report  # noqa: E402

_register_report(app)

from .cli_inference import register as _register_inference  # noqa: E402  (needs handle_errors above)

_register_inference(app)


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
