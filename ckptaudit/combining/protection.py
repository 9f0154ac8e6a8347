"""What prune must keep for combined checkpoints: the members they still need.

A prediction ensemble (meta.json ``kind: ensemble``) is served by running every member, so
its members are kept for as long as the ensemble's folder exists. A weight average
(``kind: weight-average``) holds its own weights, but it is kept reproducible (and
re-averageable) from its members until it is exported (pinned by ``pick --link/--copy``);
after that its members are ordinary checkpoints again.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..store.reader import Run
from .ensembles import AVERAGE, ENSEMBLE, combination_of


def member_reasons(run: Run, pinned: Iterable[str] = ()) -> dict[str, list[str]]:
    """Checkpoint name -> keep reasons (``member of NAME``) for members still needed."""
    exported = set(pinned)
    out: dict[str, list[str]] = {}
    for ckpt in run.checkpoints:
        combo = combination_of(ckpt)
        if combo is None:
            continue
        if combo["kind"] == AVERAGE and ckpt.name in exported:
            continue
        if combo["kind"] in (ENSEMBLE, AVERAGE):
            for member in combo["members"]:
                out.setdefault(member, []).append(f"member of {ckpt.name}")
    return out
