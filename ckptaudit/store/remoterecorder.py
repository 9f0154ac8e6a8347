"""The recorder writing to object storage (``Recorder("s3://bucket/runs/exp1", ...)``).

It is the local :class:`~ckptaudit.store.recorder.Recorder` run on a local staging folder
(the same checks, the same files, the same atomic local writes), whose results are then
published by the commit rule of :mod:`~ckptaudit.store.remotewrite`: each checkpoint's
objects first and its ``meta.json`` last, ``run.json`` as one whole-object put. When built it
mirrors what it needs of an existing run (resume and the validation-set guard work as
locally) and removes the uncommitted objects a killed writer left. Staged weights are
dropped once uploaded, so local disk holds one checkpoint's weights at a time.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import CkptauditError, UsageError
from .reader import CHECKPOINTS_DIR, RUN_FILE
from .recorder import Recorder
from .remote import COMMIT_OBJECT, filesystem
from .remotelist import remote_errors
from .remotewrite import (
    check_key,
    clear_in_progress,
    get_run_json,
    list_run,
    mirror_for_writer,
    put_run_json,
    scratch_folder,
    upload_checkpoint,
)
from .weights import NON_WEIGHT_FILES


class RemoteRecorder(Recorder):
    """A :class:`Recorder` whose run lives at a URL; ``Recorder(url, ...)`` builds one.

    ``url`` is the run's URL; ``path`` the local staging folder (the run as this process
    wrote it: run.json, meta.json and predictions; weights only until uploaded). One recorder
    writes a run at a time (object stores have no lock; a second live writer's uncommitted
    upload would be removed as a crashed one's)."""

    def __init__(self, path: str, **options: Any) -> None:
        self.url = path.rstrip("/")
        self._fs, self._root = filesystem(self.url)
        staging = scratch_folder("ckptaudit-staging-")
        mirror_for_writer(self.url, staging)
        try:
            super().__init__(staging, **options)  # every check of a local run, on the mirror
        except CkptauditError as exc:
            raise self._shown(exc, staging) from None
        with remote_errors(self.url):
            # a killed writer's uncommitted objects: invisible, never completed, removed now
            clear_in_progress(self._fs, self._root)
            put_run_json(self._fs, self._root, self.path)

    def _shown(self, exc: CkptauditError, staging: Path) -> CkptauditError:
        """The error as the user should read it: the URL, never the staging folder."""
        path = exc.path
        if path and path.startswith(str(staging)):
            path = self.url + path[len(str(staging)) :]
        return type(exc)(exc.problem, path)

    def save(self, epoch: int, model: Any = None, **arrays: Any) -> Path:
        """As :meth:`Recorder.save`; the checkpoint is published before it returns (the
        returned folder is the staging copy: meta.json and predictions)."""
        try:
            return super().save(epoch, model, **arrays)
        except CkptauditError as exc:
            raise self._shown(exc, self.path) from None

    def _committed(self, folder: Path) -> None:
        """Publish a checkpoint just written into staging; on failure it is removed from
        staging too (saving it again is then allowed) and the error is one line."""
        try:
            with remote_errors(self.url):
                upload_checkpoint(self._fs, self._root, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        for entry in folder.iterdir():  # uploaded: the staging copy keeps what readers of it need
            if entry.name not in NON_WEIGHT_FILES:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()

    def _update_run(self, change: Any) -> Any:
        with remote_errors(self.url):
            get_run_json(self._fs, self._root, self.path)
        result = change()
        with remote_errors(self.url):
            put_run_json(self._fs, self._root, self.path)
        return result

    def select_by(self, metric: str | None, mode: str | None = None) -> None:
        """As :meth:`Recorder.select_by`, read-modify-write of the remote run.json."""
        self._update_run(lambda: Recorder.select_by(self, metric, mode))

    def choose(self, which: int | str) -> str:
        """As :meth:`Recorder.choose`, read-modify-write of the remote run.json."""
        return self._update_run(lambda: Recorder.choose(self, which))

    def _move_aside(self) -> None:
        """``fresh=True``: copy the run's objects under ``.replaced-<UTC time>/`` (ignored by
        every command; nothing is lost), then un-commit and remove the originals: each
        checkpoint's meta.json first, run.json last, so a kill leaves no checkpoint visible
        without its objects."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        fs, root = self._fs, self._root
        with remote_errors(self.url):
            listing = list_run(fs, root)
            keys = sorted(k for k in listing if k == RUN_FILE or k.startswith(CHECKPOINTS_DIR + "/"))
            for key in keys:
                fs.copy(check_key(root, key), check_key(root, f".replaced-{stamp}/{key}"))
            commits = [k for k in keys if k.startswith(CHECKPOINTS_DIR + "/") and k.endswith("/" + COMMIT_OBJECT)]
            if commits:
                fs.rm([check_key(root, k) for k in commits])
            rest = [k for k in keys if k not in commits and k != RUN_FILE]
            if rest:
                fs.rm([check_key(root, k) for k in rest])
            if RUN_FILE in listing:
                fs.rm_file(check_key(root, RUN_FILE))
        super()._move_aside()


def existing_remote_run(url: str) -> Path | None:
    """A local mirror of the run at ``url`` for :meth:`Recorder.existing_run` (kept until
    the process exits: a framework callback re-reads it), or None when there is none."""
    dest = scratch_folder("ckptaudit-existing-")
    if not mirror_for_writer(url.rstrip("/"), dest):
        return None
    if not (dest / RUN_FILE).is_file():
        raise UsageError("run.json could not be read back", url)
    return dest
