"""A predictor and a writer that leave traces (files in a shared folder), to see from the
test where ``predict --engine ray`` builds models, reads weights and writes outputs."""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckptaudit.inference.predict import SplitWriter
from ckptaudit.inference.predictor import Predictor


def trace(folder: str | Path, kind: str, detail: str = "") -> None:
    """One trace file: KIND~PID~THREAD~RANDOM holding ``detail``."""
    name = f"{kind}~{os.getpid()}~{threading.current_thread().name}~{uuid.uuid4().hex[:6]}"
    (Path(folder) / name).write_text(detail)


def traces(folder: Path) -> list[tuple[str, int, str, str]]:
    """(kind, pid, thread, detail) of every trace."""
    out = []
    for p in folder.iterdir():
        kind, pid, thread, _ = p.name.split("~")
        out.append((kind, int(pid), thread, p.read_text()))
    return out


class TracingPredictor(Predictor):
    """:class:`Predictor` that records each model build and each weights file read (give
    ``trace_to`` with functools.partial)."""

    def __init__(self, *args: Any, trace_to: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace_to = trace_to
        trace(trace_to, "build")

    def read_weights(self, weights: Path) -> Any:
        trace(self.trace_to, "read", weights.parent.name)
        return super().read_weights(weights)


@dataclass(frozen=True)
class TracingWriter(SplitWriter):
    """:class:`SplitWriter` that records which process wrote each checkpoint."""

    trace_to: str = ""

    def __call__(self, job: Any, datasets: Any, outputs: Any) -> dict[str, str | None]:
        trace(self.trace_to, "write", job.checkpoint)
        return super().__call__(job, datasets, outputs)
