"""ckptaudit: choose checkpoints after the fact, under any metric, and prove the choice was honest.

The library has the same verbs as the command line::

    import ckptaudit
    verdict = ckptaudit.evaluate("runs/exp", "recall")     # one frozen Verdict: every number, once
    df = ckptaudit.rank("runs/", "recall")                 # a pandas DataFrame, best first
    report = ckptaudit.audit("runs/")                      # findings as dataclasses
    result = ckptaudit.check("runs/exp", "recall", chosen="epoch-0009")
    plans = ckptaudit.prune("runs/exp", "recall", keep=3)  # dry run unless yes=True
    ckptaudit.report("runs/", "recall", output="report.html")  # an offline HTML page
    fig = ckptaudit.plot("runs/exp", "recall")             # a matplotlib Figure

Heavy modules (pandas, torch, scikit-learn) are imported only by the functions that need
them, so ``import ckptaudit`` and the CLI start fast and work without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import pandas as pd


def evaluate(
    path: str | Path,
    metrics: str | Sequence[str] = (),
    *,
    policy: Any = None,
    chosen: str | None = None,
    config: str | Path | None = None,
    **options: Any,
) -> Any:
    """The verdict of the run at ``path``: a frozen :class:`~ckptaudit.verdict.Verdict` with
    every metric's value and 95% interval per checkpoint, the checkpoints that cannot be told
    apart from the best, the winner's value expected on new data, the audit's findings, what
    training chose and selected by, and (with ``policy``: a
    :class:`~ckptaudit.config.Policy`, a dict of docs/check.md keys, or ``config``) the
    gate's rules. Every view (rank, pick, check, report, plot) reads the same object;
    ``.to_json()`` and ``.to_frame()`` for scripts and notebooks. ``options``: ``mode``,
    ``resamples``, ``seed``, ``audit``."""
    from .verdict.build import evaluate as run_evaluate

    if isinstance(policy, dict) or config is not None:
        from .config import resolve_policy

        policy = resolve_policy(None if config is None else Path(config), **(policy or {}))
    if policy is not None and metrics:
        from dataclasses import replace

        policy = replace(policy, metric=_list(metrics)[0])
    if policy is None:
        return run_evaluate(path, metrics, chosen=chosen, **options)
    from .gate.engine import judge

    return run_evaluate(path, metrics, policy=policy, chosen=chosen, judge=judge, **options)


def rank(paths: str | Path | Sequence[str | Path], metrics: str | Sequence[str], **options: Any) -> pd.DataFrame:
    """Re-score every checkpoint under ``paths`` and return a DataFrame, best first.

    ``options`` are those of :func:`ckptaudit.ranking.rank_checkpoints` (``mode``,
    ``top``, ``per_run``). Runs left out of a sweep are the last rows and, with their
    reasons, in ``df.attrs["skipped"]``; unreadable inputs in ``df.attrs["problems"]``.
    """
    from .ranking import rank_checkpoints, to_dataframe

    ranking = rank_checkpoints(_paths(paths), _list(metrics), **options)
    df = to_dataframe(ranking)
    df.attrs["skipped"] = [s.as_dict() for s in ranking.skipped]
    df.attrs["problems"] = list(ranking.problems)
    return df


def audit(paths: str | Path | Sequence[str | Path], **options: Any) -> Any:
    """Audit the runs under ``paths``; returns an :class:`~ckptaudit.auditing.AuditReport`
    whose ``findings`` are :class:`~ckptaudit.auditing.finding.Finding` dataclasses.

    ``options`` are the fields of :class:`~ckptaudit.auditing.AuditOptions` (``metric``,
    ``resamples``, thresholds, ``select``, ``ignore``).
    """
    from .auditing import AuditOptions
    from .audits import audit_paths

    return audit_paths(_paths(paths), AuditOptions(**options))


def pick(
    paths: str | Path | Sequence[str | Path],
    metric: str,
    *,
    link: str | Path | None = None,
    copy: str | Path | None = None,
    pin: bool = True,
    **options: Any,
) -> list[Any]:
    """The best checkpoint of each run (or ``across=True`` of all) as
    :class:`~ckptaudit.picking.Pick` records; with ``link``/``copy`` the single winner is
    placed, its provenance written and (with ``pin``) the checkpoint pinned in its run."""
    from .picking import choose, place

    picks = choose(_paths(paths), metric, **options)
    if link is not None or copy is not None:
        if len(picks) != 1:
            from .errors import UsageError

            raise UsageError(f"{len(picks)} winners: place one with across=True or one run")
        picks = [place(picks[0], link=None if link is None else Path(link), copy=None if copy is None else Path(copy), pin=pin)]
    return picks


def prune(paths: str | Path | Sequence[str | Path], metrics: str | Sequence[str], *, keep: int, **options: Any) -> list[Any]:
    """Plan (and with ``yes=True`` carry out) a prune; returns one
    :class:`~ckptaudit.pruning.PrunePlan` per run. Dry run unless ``yes=True``."""
    from .pruning import prune as prune_runs

    return prune_runs(_paths(paths), _list(metrics), keep=keep, **options)


def unpin(checkpoint: str | Path, *, dest: str | Path | None = None) -> list[Any]:
    """Remove the pins of ``RUN/checkpoints/NAME`` (only the one for ``dest`` when given),
    so that prune may delete it again; returns the removed :class:`~ckptaudit.store.pins.Pin`
    records and raises :class:`~ckptaudit.errors.UsageError` when there was none."""
    from .store.pins import unpin as unpin_checkpoint

    return unpin_checkpoint(checkpoint, dest=dest)


def check(
    path: str | Path, metric: str | None = None, *, chosen: str | None = None, config: str | Path | None = None, **policy: Any
) -> Any:
    """Run the CI gate on one run; returns a :class:`~ckptaudit.gate.GateResult`
    (``.passed``, ``.rules``). ``policy`` takes the keys of docs/check.md."""
    from .config import resolve_policy
    from .gate import check as run_gate

    resolved = resolve_policy(None if config is None else Path(config), metric=metric, **policy)
    return run_gate(path, resolved, chosen)


def report(
    paths: str | Path | Sequence[str | Path],
    metrics: str | Sequence[str] = (),
    *,
    output: str | Path | None = None,
    **options: Any,
) -> Any:
    """Gather the report of the runs under ``paths``: a :class:`~ckptaudit.reporting.Report`
    (curves, decision, findings, diagnostics per run, each read from the run's verdict). With
    ``output`` the self-contained HTML page is written there too (``*.json``: the verdicts as
    JSON, :meth:`~ckptaudit.reporting.Report.to_json`). ``options`` are those of
    :func:`ckptaudit.reporting.build_report` (``mode``, ``resamples``, ``seed``, ``policy``)."""
    from .reporting import build_report

    result = build_report(_paths(paths), _list(metrics), **options)
    if output is not None and str(output).lower().endswith(".json"):
        from .render.report_json import write_json

        write_json(result, output)
    elif output is not None:
        from .render.html import write_html

        write_html(result, output)
    return result


def plot(
    paths: str | Path | Sequence[str | Path],
    metrics: str | Sequence[str] = (),
    *,
    output: str | Path | None = None,
    dpi: int = 100,
    **options: Any,
) -> Any:
    """The curves of the runs under ``paths`` as a matplotlib Figure (needs matplotlib, the
    ``plot`` extra); with ``output`` also saved as PNG/SVG/PDF. ``options``: ``mode``,
    ``width``, ``height`` (inches), ``resamples``, ``seed``."""
    from .plotting import plot_paths, save_figure

    figure = plot_paths(_paths(paths), _list(metrics), **options)
    if output is not None:
        save_figure(figure, output, dpi=dpi)
    return figure


# --- replay (issue 23)
def replay(paths: str | Path | Sequence[str | Path], rules: str | Sequence[str], metric: str, **options: Any) -> Any:
    """Replay stopping and retention ``rules`` (docs/replay.md) on the runs under ``paths``
    under target ``metric``: a :class:`~ckptaudit.replay.ReplayReport`, one result per rule
    and run. ``options``: ``mode``, ``resamples``, ``seed``."""
    from .replay import replay as replay_runs

    return replay_runs(_paths(paths), _list(rules), metric, **options)


# ---
def selections(
    paths: str | Path | Sequence[str | Path], metric: str, *, mode: str | None = None, resamples: int = 1000, seed: int = 0
) -> list[Any]:
    """Selection statistics of each run under ``paths``: one
    :class:`~ckptaudit.selection.RunSelection` per run (the winner's value expected on new
    data, its optimism and interval, and the checkpoints that cannot be told apart from the
    best; ``.as_dict()`` for JSON), as each run's verdict holds them (:func:`evaluate`).
    Reads each val.npz once per run."""
    from .verdict.build import Options, evaluate_paths

    options = Options(all_metrics=False, audit=False, resamples=resamples, seed=seed, mode=mode)
    judged = evaluate_paths(_paths(paths), [metric], options)
    return [v.primary.selection for v in judged.verdicts if v.primary.selection is not None]


def import_checkpoints(framework: str, src: str | Path, run: str | Path, **options: Any) -> Any:
    """``ckptaudit import``: build a run from a framework's checkpoints (weights hard-linked);
    returns an :class:`~ckptaudit.inference.importers.ImportResult`. ``options`` are those of
    :func:`ckptaudit.inference.importers.import_checkpoints` (``task``, ``output``, ...)."""
    from .inference.importers import import_checkpoints as run_import

    return run_import(framework, src, run, **options)


def predict(run: str | Path, model: str, data: Any, **options: Any) -> Any:
    """``ckptaudit predict``: fill val.npz (and train.npz) of every checkpoint lacking them;
    returns a :class:`~ckptaudit.inference.predict.PredictReport`."""
    from .inference.predict import predict as run_predict

    return run_predict(run, model, data, **options)


def _paths(paths: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def combine(paths: str | Path | Sequence[str | Path], metric: str, **options: Any) -> Any:
    """Search ensembles of the runs' checkpoints under ``metric`` and adopt one only when its
    selection-corrected gain over the best single checkpoint is above noise (see
    :func:`ckptaudit.combining.combine`; returns its :class:`~ckptaudit.combining.CombineReport`)."""
    from .combining import combine as combine_runs

    return combine_runs(paths, metric, **options)


def _live_audit(run: Any, *, on_finding: str, report: Any) -> Any:
    """The Recorder's live audit (ckptaudit.auditing.live), built here so that the store
    (which the audit reads) never imports the auditing package."""
    from .auditing.live import LiveAudit

    return LiveAudit(run, on_finding=on_finding, report=report)


def _list(metrics: str | Sequence[str]) -> list[str]:
    return [metrics] if isinstance(metrics, str) else list(metrics)


def __getattr__(name: str) -> Any:
    # NOTE: lazy access to the recorder keeps torch out of `import ckptaudit`.
    if name == "Recorder":
        from .store.recorder import Recorder

        return Recorder
    raise AttributeError(f"module 'ckptaudit' has no attribute {name!r}")


def __dir__() -> list[str]:
    # NOTE: the public names (``Recorder`` included, which is lazy), not the typing helpers
    # this module imports for its signatures
    return sorted(__all__)


__all__ = [
    "Recorder",
    "__version__",
    "audit",
    "check",
    "combine",
    "evaluate",
    "import_checkpoints",
    "pick",
    "plot",
    "predict",
    "prune",
    "rank",
    "replay",
    "report",
    "selections",
    "unpin",
]
