"""Which checkpoint of a run a ``--chosen`` argument names, and how it was identified.

``--chosen`` may be a checkpoint's name, its folder (or a copy of it), a provenance file
written by ``pick``, or a weights file copied out of the run: identified by sha256 first,
then by tensor content (:mod:`ckptaudit.store.weights`). Nothing here unpickles code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CkptauditError, UsageError, did_you_mean
from .pruned import weights_removed
from .reader import META_FILE, Checkpoint, Run
from .remote import is_remote, location
from .weights import (
    FolderIdentity,
    WeightsError,
    model_files,
    read_text_safely,
    sha256_file,
    tensor_fingerprint,
    weight_hashes,
)

#: the suffix of the provenance file ``pick`` writes beside a placed checkpoint
PROVENANCE_SUFFIX = ".ckptaudit.json"


@dataclass(frozen=True)
class Identified:
    """The checkpoints ``--chosen`` (or run.json ``chosen``) identifies, and how. Several
    candidates when the shipped weights equal those of several checkpoints."""

    candidates: tuple[Checkpoint, ...]
    how: str


def _matches(how: str, found: list[tuple[Checkpoint, str]]) -> Identified:
    names = ", ".join(f"{ckpt.name}/{rel}" for ckpt, rel in found)
    if len(found) == 1:
        return Identified((found[0][0],), f"{how} matches {names}")
    return Identified(
        tuple(ckpt for ckpt, _ in found),
        f"{how} matches {len(found)} checkpoints with identical weights ({names}): ambiguous",
    )


def _identities(run: Run) -> list[tuple[Checkpoint, FolderIdentity]]:
    return [(ckpt, FolderIdentity(ckpt.path, run.path)) for ckpt in run.checkpoints]


def _content(ident: FolderIdentity, path: Path, errors: list[str]) -> str | None:
    try:
        return ident.tensors(path)
    except WeightsError as exc:
        errors.append(str(exc))
        return None


def _match_file(run: Run, path: Path) -> Identified:
    """A weights file copied out of the run (same bytes) or re-saved (same tensors)."""
    digest = sha256_file(path)
    idents = _identities(run)
    by_bytes = []
    for ckpt, ident in idents:
        rel = next((ident.rel(f) for f in ident.files if ident.sha256(f) == digest), None)
        if rel is not None:
            by_bytes.append((ckpt, rel))
    if by_bytes:
        return _matches("sha256", by_bytes)
    fingerprint = tensor_fingerprint(path)
    if fingerprint is None:
        raise UsageError(
            f"sha256 {digest[:12]}… matches no weights file of {run.name}, and the file holds no tensors "
            "ckptaudit can read (torch, safetensors, .keras, .h5) to compare by content",
            path,
        )
    errors: list[str] = []
    by_content = []
    for ckpt, ident in idents:
        rel = next((ident.rel(f) for f in model_files(ident.files) if _content(ident, f, errors) == fingerprint), None)
        if rel is not None:
            by_content.append((ckpt, rel))
    if by_content:
        return _matches("tensor content", by_content)
    unread = f"; {len(errors)} file(s) of the run could not be read: {errors[0]}" if errors else ""
    raise UsageError(
        f"matches no weights file of {run.name}: neither its sha256 {digest[:12]}… nor its tensor content{unread}", path
    )


def _match_folder(run: Run, path: Path) -> Identified:
    """A checkpoint folder of the run, a copy of one, or a folder of re-saved weights: it
    matches a checkpoint when every weights file of it (:func:`model_files`: by suffix or
    content, never training state such as HF's ``rng_state.pth``, never configs) matches
    one of the checkpoint's: by tensor content, or by sha256 for a weights file ckptaudit
    cannot read (``model.onnx``), which therefore must be byte-identical to one of the run."""
    resolved = path.resolve()
    for ckpt in run.checkpoints:
        if ckpt.path.resolve() == resolved:
            return Identified((ckpt,), "by folder")
    given = FolderIdentity(path, path)
    if not given.files:
        raise UsageError("folder holds no weights files to identify it by", path)
    idents = _identities(run)
    hashes = {given.rel(f): given.sha256(f) for f in given.files}
    same = [ckpt for ckpt, ident in idents if {ident.rel(f): ident.sha256(f) for f in ident.files} == hashes]
    if same:
        found = [(ckpt, "*") for ckpt in same]
        if len(same) == 1:
            return Identified((same[0],), f"folder matches {same[0].name} by sha256")
        return _matches("folder sha256", found)
    shipped = model_files(given.files)
    if not shipped:
        raise UsageError(
            f"folder matches no checkpoint of {run.name} by sha256 and holds no weights file "
            "(.safetensors, .bin, .pt, .keras, .h5, ...) to compare by content",
            path,
        )
    wanted = {f: given.tensors(f) for f in shipped}
    unread = [f for f, fp in wanted.items() if fp is None]
    errors: list[str] = []
    by_content = []
    for ckpt, ident in idents:
        have = {_content(ident, f, errors) for f in model_files(ident.files)}
        if not all(fp in have for fp in wanted.values() if fp is not None):
            continue
        if unread and not {given.sha256(f) for f in unread} <= {ident.sha256(f) for f in ident.files}:
            continue
        by_content.append((ckpt, f"{{{', '.join(given.rel(f) for f in shipped)}}}"))
    if by_content:
        return _matches("folder tensor content", by_content)
    if unread:
        name = given.rel(unread[0])
        raise UsageError(
            f"folder holds {name}, a weights file ckptaudit cannot read (it reads torch, safetensors, .keras and "
            f".h5) whose sha256 matches no checkpoint of {run.name} holding the folder's other weights: the gate "
            "cannot tell which model it is; remove it from the folder or record it in the run",
            path,
        )
    failed = f"; {len(errors)} file(s) of the run could not be read: {errors[0]}" if errors else ""
    raise UsageError(
        f"folder matches no checkpoint of {run.name} (compared sha256 of {len(hashes)} files and the tensor "
        f"content of {len(wanted)}){failed}",
        path,
    )


def _provenance(run: Run, path: Path) -> Identified:
    try:
        prov = json.loads(read_text_safely(path, UsageError))
    except ValueError as exc:
        raise UsageError(f"unreadable provenance file: {exc}", path) from None
    name = prov.get("checkpoint") if isinstance(prov, dict) else None
    ckpt = run.checkpoint(name) if isinstance(name, str) else None
    if ckpt is None:
        raise UsageError(f"provenance names checkpoint {name!r}, which is not in run {run.name}", path)
    recorded = str(prov.get("run", ""))
    here = location(run.path)
    if (recorded if is_remote(recorded) else os.path.realpath(recorded)) != here:
        raise UsageError(f"provenance is for run {prov.get('run')}, not {here}", path)
    files = prov.get("files")
    if not (isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())):
        raise UsageError("provenance has no 'files' object of weights hashes to verify the checkpoint by", path)
    if not files:
        # NOTE: pick writes no hashes when the weights lie outside the run (a link across file
        # systems): the provenance then vouches for nothing, and any model placed beside it
        # would pass. The gate verifies, or refuses.
        raise UsageError(
            f"provenance lists no weights files of {ckpt.name} (its weights lie outside the run?), so nothing can be "
            "verified by it; give the shipped weights file or folder as --chosen instead",
            path,
        )
    if files != weight_hashes(ckpt.path, run.path):
        raise UsageError(f"the weights of {ckpt.name} changed since the provenance was written", path)
    dest = path.with_name(path.name[: -len(PROVENANCE_SUFFIX)])
    if (dest.exists() or dest.is_symlink()) and weight_hashes(dest) != files:
        raise UsageError("the placed copy does not match its provenance hashes", dest)
    return Identified((ckpt,), f"provenance {path.name}")


def identify(run: Run, chosen: str | None) -> Identified | None:
    """Every checkpoint ``chosen`` (or, when None, run.json ``chosen``) may be, and how it
    was identified; None when neither names one."""
    if chosen is None:
        if run.chosen is None:
            return None
        ckpt = run.checkpoint(run.chosen)
        if ckpt is None:
            raise UsageError(f"run.json 'chosen' names {run.chosen!r}, which is not a checkpoint of the run", run.path)
        return Identified((ckpt,), "run.json chosen")
    by_name = run.checkpoint(chosen)
    if by_name is not None and weights_removed(run.path, by_name.name):
        raise UsageError(
            f"--chosen {chosen!r}: the weights of {by_name.name} were deleted by `ckptaudit prune` (only its "
            "predictions were kept): nothing shipped can be that checkpoint"
        )
    path = Path(chosen)
    if by_name is not None and not (path.exists() and path.is_file()):
        return Identified((by_name,), "by name")
    if not path.exists():
        hint = did_you_mean(chosen, [c.name for c in run.checkpoints])
        raise UsageError(f"--chosen {chosen!r} is neither a checkpoint of the run nor an existing file or folder{hint}")
    if path.is_dir():
        return _match_folder(run, path)
    if not path.is_file():
        raise UsageError("--chosen is not a regular file or folder (a FIFO, device or socket is never read)", path)
    if path.name.endswith(PROVENANCE_SUFFIX):
        return _provenance(run, path)
    if path.name == META_FILE:
        return identify(run, str(path.parent))
    return _match_file(run, path)


def identify_chosen(run: Run, chosen: str | None) -> tuple[Checkpoint | None, str | None]:
    """The checkpoint ``--chosen`` names and how it was identified (the earliest, when the
    weights match several; :func:`check` applies the documented policy instead)."""
    found = identify(run, chosen)
    if found is None:
        return None, None
    return found.candidates[0], found.how


def _provenance_fields(chosen: str | None) -> dict[str, Any]:
    """The JSON object of the provenance file ``chosen`` names, or {} when it names none (or
    an unreadable one: identifying the checkpoint reports that)."""
    if chosen is None or not chosen.endswith(PROVENANCE_SUFFIX) or not Path(chosen).is_file():
        return {}
    try:
        data = json.loads(read_text_safely(chosen))
    except (CkptauditError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def provenance_metric(chosen: str | None) -> str | None:
    """The metric a provenance file says its checkpoint was picked by, if ``chosen`` is one."""
    return _provenance_fields(chosen).get("metric")


def provenance_threshold(chosen: str | None) -> float | None:
    """The operating threshold a provenance file records beside its checkpoint (``pick`` under an
    operating-point metric, issue 20), if ``chosen`` is one and records a number in [0, 1]."""
    value = _provenance_fields(chosen).get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        return None
    return float(value)
