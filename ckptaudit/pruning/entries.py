"""The shape of a prune plan: one row per checkpoint (kept and why, or doomed and what it
frees), and the plan that the dry run shows and ``yes`` carries out as is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store.pruned import PRUNED_FILE
from ..store.reader import Run


@dataclass(frozen=True)
class PlanEntry:
    """One checkpoint (or alias, or trash entry) in a prune plan."""

    checkpoint: str
    epoch: int | None
    #: "keep", "delete", "finish" (trash left by an interrupted prune) or "alias" (a link, untouched)
    action: str
    kept_by: tuple[str, ...]
    size: int
    path: Path
    note: str = ""
    #: where "delete"/"finish" moves the checkpoint (``--trash``); None deletes it
    trash: str | None = None
    #: (st_dev, st_ino) of the folder when planned: execution refuses a swapped folder
    identity: tuple[int, int] | None = field(default=None, compare=False, repr=False)
    #: bytes really freed by deleting only the weights / the whole folder (hard links whose
    #: other link survives free nothing); for "keep" rows what each would free were it doomed
    size_weights: int = 0
    size_all: int = 0
    #: what the checkpoint scored under each metric of the plan (recorded by --all)
    scores: dict[str, float | None] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of a plan row."""
        return {
            "checkpoint": self.checkpoint,
            "epoch": self.epoch,
            "action": self.action,
            "kept_by": list(self.kept_by),
            "size": self.size,
            "size_weights": self.size_weights,
            "size_all": self.size_all,
            "note": self.note,
            "trash": self.trash,
        }


@dataclass(frozen=True)
class PrunePlan:
    """What a prune of one run keeps and deletes, and why."""

    run: Run
    entries: tuple[PlanEntry, ...]
    metrics: tuple[str, ...]
    executed: bool = False
    deleted: tuple[str, ...] = field(default=())
    #: the checkpoint names a checkpoint path limited the prune to (None: the whole run)
    scope: tuple[str, ...] | None = None
    #: "weights" (the default: weights go, predictions and meta.json stay) or "all" (--all)
    mode: str = "weights"
    #: bytes each mode would really free (the dry run shows both)
    reclaimable: dict[str, int] = field(default_factory=dict)

    @property
    def reclaimed(self) -> int:
        """Bytes freed by the deletions (and by finishing old trash)."""
        return sum(e.size for e in self.entries if e.action in ("delete", "finish"))

    @property
    def notes(self) -> list[str]:
        """Lines for the output: both sizes, and what the prune does to the run's statistics."""
        doomed = [e for e in self.entries if e.action == "delete"]
        candidates = sum(1 for e in self.entries if e.action in ("keep", "delete"))
        out = []
        if self.reclaimable:
            out.append(
                f"{self.run.name}: weights only (the default) frees {_human(self.reclaimable.get('weights', 0))}; "
                f"--all (whole folders) frees {_human(self.reclaimable.get('all', 0))}"
            )
        if doomed and self.mode == "weights":
            out.append(
                f"{self.run.name}: predictions and meta.json of the {len(doomed)} pruned checkpoint(s) stay, "
                "so every selection statistic still counts them (unchanged)"
            )
        elif doomed:
            left = candidates - len(doomed)
            out.append(
                f"{self.run.name}: --all {'deletes' if not self.executed else 'deleted'} {len(doomed)} candidate(s) whole; "
                f"their scores are recorded in {PRUNED_FILE}, but the selection statistics (tie set, expected on new "
                f"data) will count {left} of {candidates} candidates and CHANGE (audit finding candidates-deleted)"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of the plan."""
        return {
            "run": self.run.name,
            "dry_run": not self.executed,
            "metrics": list(self.metrics),
            "scope": None if self.scope is None else list(self.scope),
            "entries": [e.as_dict() for e in self.entries],
            "mode": self.mode,
            "reclaimed_bytes": self.reclaimed,
            "reclaimable_bytes": dict(self.reclaimable),
            "notes": self.notes,
            "deleted": list(self.deleted),
        }


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} bytes"
