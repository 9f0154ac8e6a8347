"""ckptaudit: choose checkpoints after the fact, under any metric, and prove the choice was honest.

The library has the same verbs as the command line::

    import ckptaudit
    df = ckptaudit.rank("runs/", metrics=["recall"])      # a pandas DataFrame, best first

Heavy modules (pandas, torch, scikit-learn) are imported only by the functions that need
them, so ``import ckptaudit`` and the CLI start fast and work without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

__version__ = "0.1.0"

if TYPE_CHECKING:
    import pandas as pd


def rank(paths: str | Path | Sequence[str | Path], metrics: str | Sequence[str], **options: Any) -> pd.DataFrame:
    """Re-score every checkpoint under ``paths`` and return a DataFrame, best first.

    ``options`` are those of :func:`ckptaudit.ranking.rank_checkpoints` (``mode``,
    ``top``, ``per_run``).
    """
    from .ranking import rank_checkpoints, to_dataframe

    return to_dataframe(rank_checkpoints(_paths(paths), _list(metrics), **options))


def _paths(paths: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def _list(metrics: str | Sequence[str]) -> list[str]:
    return [metrics] if isinstance(metrics, str) else list(metrics)


def __getattr__(name: str) -> Any:
    # NOTE: lazy access to the recorder keeps torch out of `import ckptaudit`.
    if name == "Recorder":
        from .recorder import Recorder

        return Recorder
    raise AttributeError(f"module 'ckptaudit' has no attribute {name!r}")


__all__ = ["rank", "Recorder", "__version__"]
