"""Writing files and copying trees without ever leaving half a file or following a link.

This module owns :func:`write_atomic` (an exclusive temporary in the target folder,
fsynced, renamed over the target) and :func:`copy_regular_tree` (regular files and
folders only, never through a symlink), the writes ``pick``, the report and the recorder's
JSON files go through.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import UsageError
from .regularfiles import _kind


def copy_fd(rfd: int, wfd: int) -> None:
    """Copy what ``rfd`` reads into ``wfd`` in 1 MiB blocks (partial writes resumed), then
    fsync ``wfd``: the copy is on disk before the caller renames or deletes anything."""
    while block := os.read(rfd, 1 << 20):
        view = memoryview(block)
        while view:
            view = view[os.write(wfd, view) :]
    os.fsync(wfd)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: an exclusive temporary (``mkstemp``: a fresh,
    unpredictable name created with ``O_EXCL``, never through a link) in the target folder,
    fsynced, renamed over ``path``. An existing ``path`` that is not a regular file (a
    device such as ``/dev/full``, a FIFO, a folder or a symbolic link) is refused, never
    replaced or written through; a missing folder is named."""
    import tempfile

    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UsageError(
            f"is {_kind(st.st_mode) if not stat.S_ISLNK(st.st_mode) else 'a symbolic link'}, not a regular file: "
            "ckptaudit writes only regular files; remove it or choose another path",
            path,
        )
    if not folder.is_dir():
        raise UsageError("no such directory", folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write into this folder: {exc.strerror or exc}", folder) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def copy_regular_tree(src: str | Path, dst: str | Path) -> None:
    """Copy the folder ``src`` to the new folder ``dst``: folders, symbolic links (as
    links, never followed) and regular files only. A device, FIFO or socket inside (a
    character device restored by ``tar x`` as root reads without end) is refused with
    :class:`UsageError` before a byte of it is read."""
    src, dst = Path(src), Path(dst)
    os.mkdir(dst, 0o755)
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        source, target = src / entry.name, dst / entry.name
        st = os.lstat(source)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISDIR(st.st_mode):
            copy_regular_tree(source, target)
        elif stat.S_ISREG(st.st_mode):
            rfd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                if not stat.S_ISREG(os.fstat(rfd).st_mode):  # swapped since the lstat
                    raise UsageError("is not a regular file; only regular files are copied", source)
                wfd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                try:
                    copy_fd(rfd, wfd)
                finally:
                    os.close(wfd)
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(rfd)
        else:
            raise UsageError(f"is {_kind(st.st_mode)}, not a regular file: only regular files are copied", source)
