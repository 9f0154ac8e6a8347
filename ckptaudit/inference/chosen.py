"""What training kept, among imported files: ``--chosen FILE`` and copies the glob caught.

A plain loop saves ``checkpoint_epoch_{N}.pth`` every epoch and ``best_model.pth`` when its
selection metric improves. ``best_model.pth`` is the checkpoint training chose, in different
bytes (torch stores the file's stem inside the zip; the seed documents wrap it in a dict with
the optimizer state): it is matched to its epoch by **tensor content**, the fingerprint the
gate uses (:func:`ckptaudit.store.weights.tensor_fingerprint`), never by name or bytes.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..store.weights import tensor_fingerprint

if TYPE_CHECKING:  # NOTE: types only: importers calls into this module, never the reverse
    from .source import Source


def _fingerprints(source: Source) -> dict[str, str]:
    """Each checkpoint's content fingerprint (of its one weights file; folders with several
    files are fingerprinted by the first that holds tensors)."""
    out: dict[str, str] = {}
    for ck in source.checkpoints:
        for f in ck.files:
            fp = tensor_fingerprint(f)
            if fp is not None:
                out[ck.name] = fp
                break
    return out


def _epochs_like(path: Path, prints: dict[str, str]) -> list[str]:
    fp = tensor_fingerprint(path)
    return [] if fp is None else [name for name, other in prints.items() if other == fp]


def _describe(path: Path, names: list[str]) -> str:
    if len(names) == 1:
        return f"{path.name} holds the tensors of {names[0]}"
    return f"{path.name} holds the tensors of {len(names)} checkpoints with identical weights ({', '.join(names)}): the earliest, {names[0]}"


def copies_of_epochs(source: Source, spare: list[Path], pattern: str | None, *, chosen_given: bool = False) -> Source:
    """``source`` with ``chosen`` set from the files the glob caught that are no epoch of their
    own but copies of one (by tensor content). A spare file that copies no epoch is refused;
    several copies of different epochs leave ``chosen`` unset (give ``--chosen``), and so
    does ``chosen_given`` (``--chosen`` decides; the copies are only noted)."""
    if not spare:
        return source
    prints = _fingerprints(source)
    copies: list[tuple[Path, list[str]]] = []
    for f in spare:
        names = _epochs_like(f, prints)
        if not names:
            why = (
                f"--epoch-pattern {pattern!r} does not match the weights file name {f.name!r}"
                if pattern is not None
                else f"no epoch can be read from the file name {f.name!r} (or another file is read as its epoch)"
            )
            raise UsageError(f"{why}, and its tensors equal no epoch file's: narrow the glob or give --epoch-pattern", f)
        copies.append((f, names))
    notes = list(source.notes)
    chosen = source.chosen
    targets = {names[0] for _, names in copies}
    if chosen_given:
        notes += [f"{_describe(f, names)}: not imported twice" for f, names in copies]
    elif len(targets) == 1:
        f, names = copies[0]
        chosen = names[0]
        notes.append(f"{_describe(f, names)}: recorded as the checkpoint training chose (not imported twice)")
    else:
        notes.append(
            "copies of several epochs were found ("
            + ", ".join(f"{f.name} = {names[0]}" for f, names in copies)
            + "): chosen left unset; give --chosen FILE"
        )
    return replace(source, chosen=chosen, notes=tuple(notes))


def identify_chosen(source: Source, chosen: str | os.PathLike[str]) -> Source:
    """``source`` with ``chosen`` set to the checkpoint ``--chosen`` names: a checkpoint name
    (``epoch-0007``) or a weights file matched to an imported checkpoint by tensor content."""
    text = str(chosen)
    path = Path(text)
    names = [ck.name for ck in source.checkpoints]
    if not path.exists():
        if text in names:
            return replace(source, chosen=text, notes=(*source.notes, f"chosen {text} (by name)"))
        raise UsageError(f"--chosen {text!r} is neither an existing file nor an imported checkpoint ({names[0]} ... {names[-1]})")
    if not path.is_file():
        raise UsageError("--chosen must be a weights file (the one training kept, e.g. best_model.pth)", path)
    for ck in source.checkpoints:  # the very file of a checkpoint
        if any(f.exists() and f.samefile(path) for f in ck.files):
            return replace(source, chosen=ck.name, notes=(*source.notes, f"chosen {ck.name}: {path.name} is its file"))
    if tensor_fingerprint(path) is None:
        raise UsageError("--chosen holds no tensors ckptaudit can read (torch, safetensors, .keras, .h5)", path)
    matches = _epochs_like(path, _fingerprints(source))
    if not matches:
        raise UsageError(f"--chosen holds tensors equal to no imported checkpoint's ({len(names)} compared by content)", path)
    return replace(source, chosen=matches[0], notes=(*source.notes, f"chosen {matches[0]}: {_describe(path, matches)}"))
