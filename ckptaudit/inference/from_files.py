"""``import keras`` and ``import files``: weight files whose epoch is read from their names
(a Keras template, or any glob of a plain loop's ``model_epoch_7.pt``)."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from .loading import check_loadable, load_state
from .source import Source, SourceCheckpoint, _match_epochs, _unique_epochs, pattern_regex, read_log

# --------------------------------------------------------------------------- keras and files


def read_keras(src: Path, *, epoch_pattern: str, metrics_csv: Path | None = None) -> Source:
    """``*.keras`` files; the epoch comes from the file name template the user gives.

    Keras file templates count epochs from 1 and CSVLogger from 0: row ``epoch=k`` of the
    CSV log belongs to the file whose name says ``k + 1``.
    """
    files = sorted(p for p in src.glob("*.keras") if p.is_file())
    if not files:
        raise UsageError("no *.keras file here", src)
    found = _match_epochs(files, epoch_pattern, ".keras")
    _unique_epochs(found)
    logs = read_log(metrics_csv, epoch_offset=1) if metrics_csv is not None else {}
    checkpoints = []
    for f, epoch, from_name in sorted(found, key=lambda t: t[1]):
        load_state(f)  # reads model.weights.h5 as data: fails early on a file that is not Keras 3
        logged = {**from_name, **logs.get(epoch, {})}
        checkpoints.append(SourceCheckpoint(f"epoch-{epoch:04d}", epoch, None, logged, (f,), origin=f))
    return Source("keras", tuple(checkpoints))


def read_files(
    pattern_glob: str, *, epoch_pattern: str | None = None, chosen: str | None = None, trust_pickle: bool = False
) -> Source:
    """Any glob of weight files (a plain loop's ``model_epoch_7.pt``); the epoch is read from
    each name by ``epoch_pattern`` (default: the last number in the name).

    A file the glob catches that is not an epoch of its own (``best_model.pth``: no epoch in
    its name, or a second file read as an epoch already taken) but holds the tensors of an
    epoch file is that epoch's copy: training kept it, so it names ``chosen``
    (:mod:`.chosen`)."""
    from .chosen import copies_of_epochs

    files = sorted(Path(p) for p in glob.glob(pattern_glob, recursive=True) if Path(p).is_file())
    if not files:
        raise UsageError(f"no file matches {pattern_glob!r}")
    epoch_files, spare = _epoch_candidates(files, epoch_pattern)
    found = _match_epochs(epoch_files, epoch_pattern, "weights") if epoch_files else []
    found, spare = _first_per_epoch(found, spare)
    if not found:
        _match_epochs(files, epoch_pattern, "weights")  # raises the error that names the first unmatched file
    _unique_epochs(found)
    checkpoints = []
    for f, epoch, logged in sorted(found, key=lambda t: t[1]):
        check_loadable(f, trust_pickle=trust_pickle)
        checkpoints.append(SourceCheckpoint(f"epoch-{epoch:04d}", epoch, None, logged, (f,), origin=f))
    source = Source("files", tuple(checkpoints))
    return copies_of_epochs(source, spare, epoch_pattern, chosen_given=chosen is not None)


def _epoch_candidates(files: Sequence[Path], pattern: str | None) -> tuple[list[Path], list[Path]]:
    """Files whose names carry an epoch under ``pattern`` (or a number, by default), and the
    others (a ``best_model.pth``), which may only be copies of an epoch."""
    if pattern is None:
        return [f for f in files if re.search(r"\d", f.name)], [f for f in files if not re.search(r"\d", f.name)]
    rx, _ = pattern_regex(pattern)
    return [f for f in files if rx.fullmatch(f.name)], [f for f in files if not rx.fullmatch(f.name)]


def _first_per_epoch(
    found: list[tuple[Path, int, dict[str, float]]], spare: list[Path]
) -> tuple[list[tuple[Path, int, dict[str, float]]], list[Path]]:
    """Where two names read as one epoch, the one whose name is the shortest is the epoch and
    the other may be its copy (``checkpoint_epoch_3.pth`` and ``best_model_epoch_3.pth``);
    :func:`.chosen.copies_of_epochs` refuses it when its tensors differ."""
    by_epoch: dict[int, list[tuple[Path, int, dict[str, float]]]] = {}
    for item in found:
        by_epoch.setdefault(item[1], []).append(item)
    kept = []
    spare = list(spare)
    for items in by_epoch.values():
        items.sort(key=lambda t: (len(t[0].name), t[0].name))
        kept.append(items[0])
        spare.extend(t[0] for t in items[1:])
    return kept, spare
