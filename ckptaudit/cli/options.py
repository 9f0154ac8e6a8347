"""Option and argument types shared by several commands, defined once."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

# NOTE: str, not Path: Path("s3://b/run") folds the "//" of a URL (docs/storage.md)
PathsArg = Annotated[
    list[str],
    typer.Argument(
        help="Runs, checkpoint folders, or folders holding runs at any depth (local paths or URLs: s3://, gs://, memory://).",
        show_default=False,
    ),
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


StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict", help="Exit 2 when any run or folder was skipped (default: a note on stderr; broken input always exits 2)."
    ),
]


ResamplesOpt = Annotated[int, typer.Option("--resamples", min=100, help="Paired-bootstrap resamples over validation rows.")]


SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap (results are reproducible).")]


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"
    never = "never"


OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="File to write.", show_default=False)]


JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        min=0,
        show_default=False,
        help="Worker processes reading and scoring checkpoints (default: CKPTAUDIT_JOBS, else automatic: "
        "up to 4 when the sweep is big enough; 1 = one process, 0 = automatic). The output is the same.",
    ),
]


class Engine(str, Enum):
    local = "local"
    ray = "ray"


EngineOpt = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="Where checkpoints are read and scored: local (this machine's processes) or ray (tasks on a Ray cluster "
        "that sees the runs at the same paths; pip install 'ckptaudit[ray]'). The output is the same.",
    ),
]


AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --engine ray: the cluster, HOST:PORT (the head's GCS port) or ray://HOST:PORT "
        "(default: RAY_ADDRESS, else a Ray running on this machine, else a local Ray started for the command).",
        show_default=False,
    ),
]


RemoteCacheOpt = Annotated[
    bool,
    typer.Option(
        "--cache",
        help="Runs given as URLs: keep their local copies in the cache folder and refresh only changed objects "
        "(by ETag) on the next command, as CKPTAUDIT_REMOTE_CACHE does (docs/storage.md).",
    ),
]
