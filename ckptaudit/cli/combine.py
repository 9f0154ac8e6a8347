"""The ``combine`` command: search ensembles and weight averages of checkpoints, adopt honestly."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from .application import _emit, _finish
from .options import AddressOpt, Engine, EngineOpt, ModeOpt, PathsArg, SeedOpt, StrictOpt


class CombineFormat(str, Enum):
    table = "table"
    json = "json"


def _gain(x: float) -> str:
    """A signed gain for the table; float rounding (a mean of identical copies differs from the
    copy by ~1e-17) is shown as 0, not as a gain or a loss (the JSON keeps every digit)."""
    return "0" if abs(x) < 1e-12 else f"{x:+.4g}"


def _table(results) -> str:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    for r in results:
        lines.append(f"{r.run}  ({r.metric}; best single {r.best_single} = {r.best_single_value:.6g})")
        lines.append(f"  {'candidate':<12} {'value':>10} {'naive gain':>11} {'corrected gain':>15}  95% interval        members")
        for c in r.candidates:
            members = ", ".join(n if k == 1 else f"{n} x{k}" for n, k in c.members)
            if len(members) > 60:
                members = members[:57] + "..."
            lines.append(
                f"  {c.label:<12} {c.value:>10.6g} {_gain(c.naive_gain):>11} {_gain(c.corrected_gain):>15}  "
                f"[{_gain(c.interval[0])}, {_gain(c.interval[1])}]  {members}"
            )
        lines.append(
            f"  search ({r.chosen}): naive {_gain(r.naive_gain)}, corrected {_gain(r.corrected_gain)} "
            f"[{_gain(r.interval[0])}, {_gain(r.interval[1])}]"
        )
        lines.append(f"  decision: {r.decision}")
        for note in r.notes:
            lines.append(f"  note: {note}")
        if r.written is not None:
            lines.append(f"  written: {r.written}")
        lines.append("")
    return "\n".join(lines)


def combine(
    paths: PathsArg,
    metric: Annotated[
        str, typer.Option("--metric", "-m", help="Metric to combine by: accuracy, log_loss, brier (mse, mae for regression).")
    ],
    mode: ModeOpt = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write the search's combination even when it is not adopted (it is marked so).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and show, write nothing.")] = False,
    across: Annotated[
        bool,
        typer.Option(
            "--across", help="One pool of every run's checkpoints (fine-tunes validated on the same rows): soups across a sweep."
        ),
    ] = False,
    fmt: Annotated[CombineFormat, typer.Option("--format", "-f", help="Output format.")] = CombineFormat.table,
    resamples: Annotated[
        int,
        typer.Option("--resamples", min=20, help="Resamples of the selection-corrected gain (each re-runs the whole search)."),
    ] = 200,
    seed: SeedOpt = 0,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Weight averages instead of ensembles: MODULE:FUNCTION returning the architecture (as predict)."
        ),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="With --model: MODULE:FUNCTION returning the validation rows (as predict).")
    ] = None,
    train_data: Annotated[
        str | None,
        typer.Option(
            "--train-data", help="With --model: training rows on which BatchNorm statistics of each average are refreshed."
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="With --model: auto, cpu, cuda or cuda:N.")] = "cpu",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="With --model: rows per forward pass.")] = 1024,
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="With --model: allow weights files that need pickle (runs their code).")
    ] = False,
    strict: StrictOpt = False,
    engine: EngineOpt = Engine.local,
    address: AddressOpt = None,
) -> None:
    """Combine checkpoints (ensembles of saved predictions) and adopt one only when it helps beyond noise.

    Searches the mean of the last k and top k checkpoints and a greedy ensemble (Caruana,
    with replacement), then re-runs the whole search on bootstrap in-bag rows and scores it
    out-of-bag: the corrected gain over the best single checkpoint, with a 95% interval. An
    adopted combination is written into the run as checkpoint combined-LABEL (meta.json kind
    and members), which rank, pick, check, report and prune then read like any checkpoint.
    With --model/--data (as predict) the search is over weight averages: uniform last-k and
    top-k averages and a greedy soup, streamed, BatchNorm refreshed on --train-data.
    """
    import json

    from ..combining import combine as combine_runs
    from ..engines import use as use_engine
    from ..errors import UsageError

    if (data is not None or train_data is not None) and model is None:
        raise UsageError("--data and --train-data go with --model (weight averages)")
    extra = {}
    if model is not None:
        from ..inference.predictor import resolve_device

        extra = dict(
            model=model,
            data=data,
            train_data=train_data,
            device=resolve_device(device),
            batch_size=batch_size,
            trust_pickle=trust_pickle,
        )
    with use_engine(engine.value, address):
        report = combine_runs(
            paths, metric, mode=mode, resamples=resamples, seed=seed, write=write, dry_run=dry_run, across=across, **extra
        )
    if fmt is CombineFormat.json:
        _emit(json.dumps({"runs": [r.to_dict() for r in report.results]}, indent=2) + "\n")
    else:
        _emit(_table(report.results))
    _finish(report.problems, report.skipped, strict)
