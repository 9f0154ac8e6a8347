"""The ``report`` and ``plot`` commands: parse, call :mod:`ckptaudit.reporting`, write the file.

Registered on the main app by :func:`register` (in ``cli/__init__.py``). Nothing heavy is
imported until a command runs: the HTML page needs only the standard library; ``plot``
imports matplotlib (the ``ckptaudit[plot]`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode
from .application import handle_errors, say
from .options import AddressOpt, Engine, EngineOpt, MetricOpt, ModeOpt, OutputOpt, PathsArg, RemoteCacheOpt


def report(
    paths: PathsArg,
    output: OutputOpt,
    metric: MetricOpt = [],  # noqa: B006 - typer needs a literal default
    mode: ModeOpt = None,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples (intervals, tied set).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    gate: Annotated[
        bool,
        typer.Option("--gate", help="Add the gate's verdict per run (policy: --config, else ckptaudit.toml, else --metric)."),
    ] = False,
    config: Annotated[Path | None, typer.Option("--config", help="Policy file for --gate (implies --gate).")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
    engine: EngineOpt = Engine.local,
    address: AddressOpt = None,
    cache: RemoteCacheOpt = False,
) -> None:
    """Write an HTML report: curves, the decision, findings and diagnostics, in one offline file.

    One self-contained page (no network needed to open it) for a run or a sweep; with
    `-o NAME.json` each run's verdict as JSON instead (the numbers the page and the CLI
    show). Exit 2 when some input could not be read (the file is still written, with the
    problem in it).
    """
    from ..store.remote import READING  # NOTE: --cache keeps the copies of runs given as URLs

    READING.keep_cache(cache)
    from ..engines import use as use_engine
    from ..reporting import build_report

    policy = None
    if gate or config is not None:
        from ..config import resolve_policy

        policy = resolve_policy(config, metric=metric[0] if metric else None, mode=mode)
    with use_engine(engine.value, address):
        result = build_report(paths, metric, mode=mode, resamples=resamples, seed=seed, policy=policy, title=title)
    if output.suffix.lower() == ".json":
        from ..render.report_json import write_json

        size = write_json(result, output)
    else:
        from ..render.html import write_html

        size = write_html(result, output)
    say(f"wrote {output} ({size / 1e3:.0f} kB, {len(result.runs)} run(s))", "")
    for problem in result.problems:
        say(problem)
    if result.problems:
        raise typer.Exit(int(ExitCode.ERROR))


def plot(
    paths: PathsArg,
    output: OutputOpt,
    metric: MetricOpt = [],  # noqa: B006
    mode: ModeOpt = None,
    dpi: Annotated[int, typer.Option("--dpi", min=20, max=600, help="Dots per inch of a PNG.")] = 100,
    width: Annotated[float | None, typer.Option("--width", min=1, help="Figure width in inches.")] = None,
    height: Annotated[float | None, typer.Option("--height", min=1, help="Figure height in inches.")] = None,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples (tied set).")] = 1000,
) -> None:
    """Draw the curves as a static image (PNG, SVG or PDF by the file's suffix; needs matplotlib).

    The chosen checkpoint and the best under the first metric are marked; for one run the
    checkpoints that cannot be told apart from the best are shaded.
    """
    from ..plotting import plot_paths, save_figure

    figure = plot_paths(paths, metric, mode=mode, width=width, height=height, resamples=resamples)
    save_figure(figure, output, dpi=dpi)
    say(f"wrote {output}", "")


def register(app: typer.Typer) -> None:
    """Add ``report`` and ``plot`` to the main app."""
    app.command("report")(handle_errors(report))
    app.command("plot")(handle_errors(plot))
