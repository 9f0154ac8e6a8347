"""What the report takes from a run's one evaluation pass besides the verdict: the
diagnostics of the checkpoints it focuses on (the chosen one and the winner), and whether
the run's files have a group column (the per-slice table), so no val.npz is read again.

:class:`FocusWatch` is an :data:`~ckptaudit.metrics.evaluation.Observer` added to the
verdict's pass. The chosen checkpoint is known before the pass (run.json), so its
diagnostics are drawn when its predictions are in hand. The winner (the best under the
first metric, ties to the earlier checkpoint, as :meth:`ckptaudit.verdict.Verdict.winner`)
is only known at the end, so the watch keeps one copy of the best predictions so far and
drops it at the next better one: at most one checkpoint's arrays besides the one being
read. A focus checkpoint the pass did not read (unreadable, metrics only, a changed
winner rule), or a winner whose output was larger than :data:`COPY_LIMIT`, is read again
by the caller.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..diagnostics import Diagnostics, diagnose
from ..metrics.evaluation import _nonfinite, prepare_predictions
from ..store.reader import Checkpoint, Predictions, Run

#: the group columns of the first file read were not seen (the pass read none)
UNSEEN = object()
#: the largest output (bytes) the watch copies to keep the best so far; a larger best is
#: read again by the report once the pass knows the winner
COPY_LIMIT = 128 << 20


class FocusWatch:
    """The report's observer of one run's pass (see the module docstring)."""

    def __init__(self, run: Run, spec: Any, chosen: str | None) -> None:
        self.run = run
        self.spec = spec  #: the first metric, bound to the run (orders; marks an operating point)
        self.chosen = chosen
        self._sign = 1.0 if spec.maximize else -1.0
        self._best: str | None = None
        self._best_value: float | None = None
        self._kept: tuple[Checkpoint, Predictions] | None = None  # the best's predictions, output copied
        self._buffer: np.ndarray | None = None  # where the best's output is copied
        #: name -> its diagnostics (None: not drawable, e.g. non-finite outputs)
        self._drawn: dict[str, Diagnostics | None] = {}
        #: the group columns of the first file the pass read (the slices' probe), else UNSEEN
        self.first_groups: Any = UNSEEN

    def __call__(self, ckpt: Checkpoint, preds: Predictions | None, prep: Any, values: tuple, error: str | None) -> None:
        if preds is not None and self.first_groups is UNSEEN:
            self.first_groups = preds.groups
        if preds is not None and ckpt.name == self.chosen:
            self._drawn[ckpt.name] = self._draw(ckpt, preds)
        v = values[0] if values else None
        # NOTE: the same comparison as Verdict.winner, so the best at the end is its winner
        if v is None or not (self._best is None or self._sign * v > self._sign * self._best_value):  # type: ignore[operator]
            return
        self._best, self._best_value, self._kept = ckpt.name, v, None
        if preds is not None and ckpt.name not in self._drawn:
            if ckpt is self.run.checkpoints[-1]:
                self._kept, self._buffer = (ckpt, preds), None  # the pass's last read: nothing overwrites it
                return
            # NOTE: the output lies in a buffer the pass's next read overwrites: copy it, into
            # the copy of the previous best (dropped now) when it fits, as the pass reuses its own
            out = preds.output
            if out.nbytes > COPY_LIMIT:
                # a large output is read again at the end instead: one read, where a run that
                # improved at every epoch copied 200 MB per epoch (issue 21)
                return
            buf = self._buffer
            if buf is None or buf.shape != out.shape or buf.dtype != out.dtype:
                buf = self._buffer = np.empty_like(out)
            np.copyto(buf, out)
            self._kept = (ckpt, replace(preds, output=buf))

    def _draw(self, ckpt: Checkpoint, preds: Predictions) -> Diagnostics | None:
        if _nonfinite(preds.output):
            return None
        return diagnose(self.run, ckpt, (), prepare_predictions(self.run, preds), self.spec)

    def diagnostics(self, name: str, roles: tuple[str, ...]) -> tuple[bool, Diagnostics | None]:
        """``(found, diagnostics)`` of checkpoint ``name`` with ``roles``: found False when the
        pass did not see its predictions (the caller reads them); the winner's copy is
        released once drawn."""
        if name not in self._drawn and self._kept is not None and self._kept[0].name == name:
            ckpt, preds = self._kept
            self._kept = self._buffer = None
            self._drawn[name] = self._draw(ckpt, preds)
        if name not in self._drawn:
            return False, None
        drawn = self._drawn[name]
        return True, None if drawn is None else replace(drawn, roles=roles)

    def held_bytes(self) -> int:
        """Bytes of the predictions this watch holds a copy of (the best so far)."""
        return 0 if self._buffer is None else int(self._buffer.nbytes)

    def release(self) -> None:
        """Drop what is kept (the copy of a best that was not the winner)."""
        self._kept = self._buffer = None
        self._drawn.clear()
