"""Where the evaluation of the read-heavy verbs runs: this machine, or a Ray cluster.

``rank``, ``pick``, ``audit``, ``check``, ``report`` and ``combine`` take ``--engine
local|ray`` (and ``--address``); the command runs inside :func:`use`, and the places that
start workers (:func:`ckptaudit.sweep.start_pool`, :func:`ckptaudit.verdict.build.evaluate_run`,
:func:`ckptaudit.combining.ensembles.load_members`) ask :func:`current` which engine to start.
An engine changes where checkpoints are read and scored, never what the pass returns: the Ray
engine (:mod:`.ray_pool`) runs the local pool's own block functions in Ray tasks and hands
their outcomes back in the same order, so every statistic is reduced here exactly as with the
local pool, and the output is the same, byte for byte.

Ray is imported only when a Ray pool starts (``import ckptaudit`` stays light).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

#: the engines a read-heavy verb runs on
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineChoice:
    """The engine a command runs on: ``name`` (``local`` or ``ray``) and, for Ray, the
    cluster's ``address`` (None: ``RAY_ADDRESS``, else a local Ray started for the command)."""

    name: str = "local"
    address: str | None = None

    @property
    def ray(self) -> bool:
        """Whether checkpoints are read and scored in Ray tasks."""
        return self.name == "ray"


_LOCAL = EngineChoice()
_CURRENT: ContextVar[EngineChoice | None] = ContextVar("ckptaudit_engine", default=None)


def current() -> EngineChoice:
    """The engine of the command running now (``local`` outside :func:`use`)."""
    return _CURRENT.get() or _LOCAL


@contextmanager
def use(name: str = "local", address: str | None = None) -> Iterator[EngineChoice]:
    """Run the block on engine ``name`` (``local`` or ``ray``); with Ray, the cluster is
    reached (or a local one started) here, so an unreachable address is one error before
    any work. ``address`` without ``ray`` is refused."""
    from ..errors import UsageError

    if name not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {name!r}")
    if address is not None and name != "ray":
        raise UsageError("--address names a Ray cluster: use it with --engine ray")
    choice = EngineChoice(name, address)
    if choice.ray:
        from .raycluster import connect

        connect(address)
    token = _CURRENT.set(choice)
    try:
        yield choice
    finally:
        _CURRENT.reset(token)


def read_ahead(runs: Sequence[Any], specs: Sequence[Sequence[Any]], *, guard: bool = True, read_all: bool = False) -> Any:
    """A Ray read-ahead over ``runs`` when the command runs on Ray (its ``outcomes(run)``
    give each checkpoint's ``("ok", predictions)``, ``("error", packed)`` or None, as the
    local pool's read-ahead does), else None: the caller reads in this process."""
    if not current().ray or not any(len(r.checkpoints) for r in runs):
        return None
    from .ray_pool import RayPool

    return RayPool(runs, specs, guard=guard, read_all=read_all, read_only=True)
