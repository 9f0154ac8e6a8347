"""The ``import`` and ``predict`` commands (registered on the main app by :func:`register`).

Thin wrappers over :func:`ckptaudit.inference.importers.import_checkpoints` and
:func:`ckptaudit.inference.predict.predict`; torch and the frameworks are imported only
when a command runs.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UsageError
from ..exitcodes import ExitCode
from .application import handle_errors, say
from .options import Engine


class ImportFormat(str, Enum):
    table = "table"
    json = "json"


class Framework(str, Enum):
    lightning = "lightning"
    hf = "hf"
    keras = "keras"
    files = "files"
    raytune = "raytune"
    optuna = "optuna"


TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow weights files that need code to load (full pickle). DANGER: this RUNS code stored in the file.",
    ),
]


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    from tabulate import tabulate

    return (
        tabulate([[("-" if r.get(c) is None else r.get(c)) for c in columns] for r in rows], headers=columns, tablefmt="simple")
        + "\n"
    )


def import_command(
    framework: Annotated[
        Framework, typer.Argument(help="What wrote SRC: lightning, hf, keras, files, raytune or optuna.", show_default=False)
    ],
    src: Annotated[
        str | None,
        typer.Argument(
            help="The framework's folder (for 'files': a glob of weight files; for 'raytune': the experiment folder). optuna: none (give --storage), only OUT.",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Argument(
            help="The new run folder to write (must not exist); raytune/optuna: the new sweep folder, one run per trial (raytune default: EXPERIMENT_DIR/ckptaudit).",
            show_default=False,
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="optuna: the study's storage, sqlite:///PATH (read-only; the file must exist)."),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="optuna: the study's name (default: the storage's only study).")
    ] = None,
    checkpoints: Annotated[
        str | None,
        typer.Option(
            "--checkpoints",
            help="optuna: where the objective saved each step's weights, e.g. 'ckpts/trial{number}/step{step}.pt' (a file or a folder); steps without stay metrics-only.",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="binary, multiclass, multilabel or regression (default: read from the data at predict)."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", help="What the model outputs: logit, probability, label or value (default: read at predict)."),
    ] = None,
    classes: Annotated[str | None, typer.Option("--classes", help="Class names in index order, comma-separated.")] = None,
    epoch_pattern: Annotated[
        str | None,
        typer.Option(
            "--epoch-pattern",
            help="File name template, e.g. 'epoch{epoch:02d}-{val_accuracy:.4f}.keras' (other fields become logged metrics), or a regex with (?P<epoch>...).",
        ),
    ] = None,
    metrics_csv: Annotated[
        Path | None,
        typer.Option(
            "--log",
            "--metrics-csv",
            help="Logged metrics per epoch: a CSV (Lightning metrics.csv, Keras CSVLogger, W&B export), a TensorBoard event file or folder, or an offline W&B run (folder or run-ID.wandb).",
        ),
    ] = None,
    selected_by: Annotated[
        str | None,
        typer.Option("--selected-by", help="What training selected by, NAME or NAME:max|min (overrides what is read)."),
    ] = None,
    chosen: Annotated[
        Path | None,
        typer.Option("--chosen", help="The file training kept (e.g. best_model.pth), matched to its epoch by tensor content."),
    ] = None,
    trust_pickle: TrustOpt = False,
    fmt: Annotated[ImportFormat, typer.Option("--format", "-f", help="Output format.")] = ImportFormat.table,
) -> None:
    """Build a run from checkpoints a framework left on disk (weights hard-linked, never copied).

    Weights are hard-linked into RUN (or referenced when RUN is on another file system);
    originals are never moved or deleted. Files are read as data: a file that needs code to
    load is refused unless --trust-pickle.
    """
    from ..inference.importers import SWEEP_FRAMEWORKS, import_checkpoints

    names = [c.strip() for c in classes.split(",")] if classes else None
    if framework.value != "optuna" and (storage is not None or study is not None or checkpoints is not None):
        raise UsageError(f"--storage, --study and --checkpoints apply to import optuna, not {framework.value}")
    if framework.value in SWEEP_FRAMEWORKS:
        given = {
            "--epoch-pattern": epoch_pattern,
            "--log": metrics_csv,
            "--chosen": chosen,
            "--trust-pickle": trust_pickle or None,
        }
        for name, value in given.items():
            if value is not None:
                raise UsageError(f"{name} does not apply to import {framework.value}")
        _import_sweep(framework.value, src, run, storage, study, checkpoints, task, output, names, selected_by, fmt)
        return
    if src is None or run is None:
        raise UsageError(f"import {framework.value} needs SRC and RUN (see 'ckptaudit import --help')")
    result = import_checkpoints(
        framework.value,
        src,
        run,
        task=task,
        output=output,
        classes=names,
        epoch_pattern=epoch_pattern,
        metrics_csv=metrics_csv,
        selected_by=selected_by,
        chosen=chosen,
        trust_pickle=trust_pickle,
    )
    rows = [
        {
            "checkpoint": c.name,
            "epoch": c.epoch,
            "step": c.step,
            "weights": c.weights,
            "logged": ", ".join(sorted(c.logged)) or None,
            "note": c.note,
        }
        for c in result.checkpoints
    ]
    if fmt is ImportFormat.json:
        doc = {
            "run": str(result.run),
            "framework": result.framework,
            "selected_by": result.selected_by,
            "chosen": result.chosen,
            "notes": list(result.notes),
            "checkpoints": rows,
        }
        typer.echo(json.dumps(doc, indent=2))
    else:
        typer.echo(_table(rows, ["checkpoint", "epoch", "step", "weights", "logged", "note"]), nl=False)
    sel = result.selected_by
    say(
        f"imported {len(rows)} checkpoint(s) from {result.framework} into {result.run}"
        + (f"; selected_by {sel['metric']}" + (f" ({sel['mode']})" if sel.get("mode") else "") if sel else "")
        + (f"; chosen {result.chosen}" if result.chosen else ""),
        "",
    )
    for note in result.notes:
        say(note, "note: ")


def _import_sweep(
    framework: str,
    src: str | None,
    out: Path | None,
    storage: str | None,
    study: str | None,
    checkpoints: str | None,
    task: str | None,
    output: str | None,
    classes: list[str] | None,
    selected_by: str | None,
    fmt: ImportFormat,
) -> None:
    """``import raytune|optuna``: one run per trial, a table (or JSON) of the trials."""
    from ..inference.sweeps import import_sweep

    if framework == "optuna" and src is not None and out is None:
        out = Path(src)  # `import optuna --storage URL OUT`: the one positional is OUT
        src = None
    elif framework == "optuna" and src is not None:
        raise UsageError("import optuna takes one folder, OUT (the study is read from --storage)")
    result = import_sweep(
        framework,
        src,
        out,
        storage=storage,
        study=study,
        checkpoints=checkpoints,
        task=task,
        output=output,
        classes=classes,
        selected_by=selected_by,
    )
    rows = [
        {
            "trial": r.run.name,
            "checkpoints": len(r.checkpoints),
            "with weights": sum(1 for c in r.checkpoints if c.weights != "none"),
            "metrics only": sum(1 for c in r.checkpoints if c.weights == "none"),
            "params": ", ".join(f"{k}={v}" for k, v in params.items()) or None,
        }
        for r, params in zip(result.runs, result.params, strict=True)
    ]
    if fmt is ImportFormat.json:
        doc = {
            "sweep": str(result.out),
            "framework": result.framework,
            "selected_by": result.runs[0].selected_by if result.runs else None,
            "notes": list(result.notes),
            "trials": [
                {**row, "run": str(r.run), "params": p} for row, r, p in zip(rows, result.runs, result.params, strict=True)
            ],
        }
        typer.echo(json.dumps(doc, indent=2))
    else:
        typer.echo(_table(rows, ["trial", "checkpoints", "with weights", "metrics only", "params"]), nl=False)
    sel = result.runs[0].selected_by if result.runs else None
    say(
        f"imported {len(rows)} trial(s) from {framework} into {result.out}"
        + (f"; selected_by {sel['metric']}" + (f" ({sel['mode']})" if sel.get("mode") else "") if sel else "")
        + f"; next: ckptaudit pick {result.out} --across -m METRIC",
        "",
    )
    for note in result.notes:
        say(note, "note: ")


def predict_command(
    run: Annotated[Path, typer.Argument(help="The run whose checkpoints need predictions.", show_default=False)],
    model: Annotated[
        str, typer.Option("--model", help="MODULE:FUNCTION (or file.py:FUNCTION) returning the architecture, no weights.")
    ],
    data: Annotated[
        str,
        typer.Option("--data", help="MODULE:FUNCTION returning validation (inputs, target[, ids]), a Dataset or a DataLoader."),
    ],
    train_data: Annotated[str | None, typer.Option("--train-data", help="Same for training data (writes train.npz).")] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="For an imported run without a task: binary, multiclass, multilabel or regression."),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", help="For an imported run without a task: logit, probability, label or value.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto (a GPU when present), cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per forward pass (torch models).")] = 1024,
    autocast: Annotated[
        bool, typer.Option("--autocast", help="Mixed precision (bfloat16 on CPU, float16 on GPU); outputs stored as float32.")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Checkpoints predicted at once (local processes, one GPU each when several).")
    ] = 1,
    engine: Annotated[
        Engine, typer.Option("--engine", help="local (this machine) or ray (a Ray cluster; pip install 'ckptaudit[ray]').")
    ] = Engine.local,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: a local Ray).")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Predict again every split not predicted on this data (other data, unreadable, or written by the recorder).",
        ),
    ] = False,
    trust_pickle: TrustOpt = False,
    fmt: Annotated[ImportFormat, typer.Option("--format", "-f", help="Output format.")] = ImportFormat.table,
) -> None:
    """Fill val.npz (and train.npz) for every checkpoint that lacks them; resumable.

    A checkpoint already predicted on the same data is skipped, so an interrupted predict
    continues where it stopped. Exit 2 when a checkpoint failed (the others are still done).
    """
    from ..errors import one_line
    from ..inference.predict import predict
    from ..progress import progress_bar

    report = predict(
        run,
        model,
        data,
        train_data=train_data,
        task=task,
        output=output,
        device=device,
        batch_size=batch_size,
        autocast=autocast,
        workers=workers,
        engine=engine.value,
        address=address,
        trust_pickle=trust_pickle,
        force=force,
        progress=progress_bar("checkpoints"),
        checkpoint_progress=lambda name: progress_bar(f"  {one_line(name)}", min_seconds=1.0),
    )
    rows = [
        {
            "checkpoint": e.checkpoint,
            "epoch": e.epoch,
            "split": e.split,
            "action": e.action,
            "rows": e.rows,
            "seconds": e.seconds,
            "note": e.note,
        }
        for e in report.entries
    ]
    if fmt is ImportFormat.json:
        typer.echo(
            json.dumps(
                {
                    "run": str(report.run),
                    "device": report.device,
                    "engine": report.engine,
                    "workers": report.workers,
                    "seconds": round(report.seconds, 3),
                    "task_note": report.task_note,
                    "entries": rows,
                },
                indent=2,
            )
        )
    else:
        typer.echo(_table(rows, ["checkpoint", "epoch", "split", "action", "rows", "seconds", "note"]), nl=False)
    if report.task_note:
        typer.echo(f"run.json: {report.task_note}", err=True)
    predicted = sum(1 for e in report.entries if e.action == "predicted")
    say(
        f"predicted {predicted} split(s) on {report.device} ({report.engine}, {report.workers} worker(s)) in {report.seconds:.1f} s",
        "",
    )
    for e in report.failures:
        say(f"{e.checkpoint}: {e.note}")
    if report.failures:
        raise typer.Exit(int(ExitCode.ERROR))


def register(app: typer.Typer) -> None:
    """Add ``import`` and ``predict`` to the main app."""
    app.command("import")(handle_errors(import_command))
    app.command("predict")(handle_errors(predict_command))
