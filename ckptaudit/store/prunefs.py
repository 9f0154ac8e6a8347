"""The filesystem half of ``prune``: a run lock, a confined journal, and deletion that
never leaves the run, never follows a symbolic link and never crosses a mount point.

Every write and delete goes through a file descriptor of the run folder opened without
following symbolic links, so a path swapped for a link after planning cannot redirect it:

- :class:`RunLock` is an OS lock (``flock``) on ``RUN/.ckptaudit-prune.lock``. The kernel
  releases it when its process dies, so a killed prune never blocks the next one, and of
  N prunes that start together exactly one holds it (no check-then-take race). The file's
  text (host, pid, command) only tells a waiting user who holds it; an empty or unreadable
  file never blocks anything.
- :meth:`ConfinedRun.journal` appends to ``prune-log.jsonl`` with ``O_NOFOLLOW`` and
  refuses anything but a regular file with one link (never a symlink or a hard link to a
  file outside the run, never a FIFO).
- :func:`remove_tree` deletes through directory descriptors and compares every entry's
  ``st_dev`` with the checkpoints folder's: a mount point inside a doomed checkpoint stops
  the prune instead of being emptied.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import LockedError, UsageError
from .atomicwrite import copy_fd
from .safeio import read_small

LOCK_FILE = ".ckptaudit-prune.lock"
LOG_FILE = "prune-log.jsonl"
#: the folder inside ``checkpoints/`` that holds checkpoints on their way out
TRASH_DIR = ".ckptaudit-trash"
#: trash entries of earlier versions (``checkpoints/.ckptaudit-trash-NAME``), still finished
LEGACY_TRASH_PREFIX = ".ckptaudit-trash-"
# NOTE: getattr keeps the module importable where a flag does not exist (prune itself needs POSIX)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class CrossDeviceError(UsageError):
    """A doomed checkpoint holds a mount point (another device): prune never crosses it."""


def real_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be acted on: it or one of its parents is a symbolic link."""
    absolute = Path(os.path.abspath(path))
    if os.path.realpath(absolute) == str(absolute):
        return None
    if absolute.is_symlink():
        return "is a symbolic link; prune the real folder it points to instead"
    for parent in absolute.parents:
        if parent.is_symlink():
            return (
                f"is reached through a symbolic link ({parent} -> {os.readlink(parent)}); "
                f"prune never acts through one: give the real path {os.path.realpath(absolute)}"
            )
    return f"is not its real path ({os.path.realpath(absolute)}); give the real path"


def disk_message(exc: OSError) -> str:
    """A user's wording of an OS error met while writing or deleting."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full ({exc.strerror})"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"the run folder is not writable ({exc.strerror})"
    return exc.strerror or str(exc)


def _host_pid(text: str) -> tuple[str, int | None]:
    host, _, rest = text.strip().partition(" ")
    try:
        return host, int(rest.split()[0])
    except (IndexError, ValueError):
        return host, None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive OS lock on a run folder, held by one process at a time.

    ``command`` is written into the lock file so that a refused user learns who holds it.
    """

    def __init__(self, run: Any, command: str = "prune") -> None:
        run_path = Path(getattr(run, "path", run))
        self.path = run_path / LOCK_FILE
        self.command = command
        self._fd: int | None = None

    def _refuse(self, holder: str) -> LockedError:
        who = f" (host and pid: {holder})" if holder else ""
        return LockedError(f"another prune holds this run's lock{who}; if none is running, remove {LOCK_FILE}", self.path.parent)

    def __enter__(self) -> RunLock:
        import fcntl

        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UsageError("is a symbolic link; prune never writes through one: remove it", self.path) from None
                raise UsageError(f"cannot take the run's lock: {disk_message(exc)}", self.path) from None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise UsageError("is not a regular file; remove it", self.path)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise self._refuse(os.pread(fd, 200, 0).decode("utf-8", "replace").strip()) from None
                except OSError as exc:  # a file system without locks (some network mounts)
                    raise UsageError(f"cannot lock the run ({exc.strerror}); prune needs file locks here", self.path) from None
                # NOTE: a holder removes the file before it lets go; the file we locked must
                # still be the one at the path, or a newer holder's file may be there.
                try:
                    now = os.stat(self.path, follow_symlinks=False)
                except FileNotFoundError:
                    os.close(fd)
                    continue
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    os.close(fd)
                    continue
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                host, pid = _host_pid(holder)
                # A lock written by a process that does not take OS locks (an earlier
                # version, or another host whose process cannot be checked) still counts.
                if holder and (host != socket.gethostname() or (pid is not None and pid != os.getpid() and _alive(pid))):
                    raise self._refuse(holder)
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{socket.gethostname()} {os.getpid()} {self.command}".encode(), 0)
                except OSError as exc:
                    os.unlink(self.path)
                    raise UsageError(f"cannot write the run's lock: {disk_message(exc)}", self.path) from None
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self
        raise self._refuse("")

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        try:
            st = os.fstat(self._fd)
            now = os.stat(self.path, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(self.path)  # before letting go, so no waiter locks a removed file
        except OSError:
            pass  # an unremoved lock file is harmless: the OS lock is what counts
        finally:
            os.close(self._fd)
            self._fd = None


def read_journal(run_path: Path) -> list[dict[str, Any]]:
    """Every well-formed record of ``prune-log.jsonl`` (a torn last line is skipped)."""
    path = run_path / LOG_FILE
    if path.is_symlink() or not path.exists():
        return []
    # NOTE: bounded and regular files only (read_small): a FIFO would block the read and a
    # sparse journal of gigabytes (one endless line) exhaust memory; both are one error.
    data = read_small(path).decode("utf-8", errors="replace")
    records = []
    for line in data.splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class ConfinedRun:
    """Descriptors of a run folder and its ``checkpoints/``, opened without following links.

    Every journal write, rename and removal of a prune goes through them.
    """

    def __init__(self, run_path: Path) -> None:
        self.path = Path(os.path.abspath(run_path))
        self.run_fd = -1
        self.ckpt_fd = -1

    def __enter__(self) -> ConfinedRun:
        for path in (self.path, self.path / "checkpoints"):
            problem = real_path_problem(path)
            if problem:
                raise UsageError(problem, path)
        try:
            self.run_fd = os.open(self.path, _DIR_FLAGS)
            self.ckpt_fd = os.open("checkpoints", _DIR_FLAGS, dir_fd=self.run_fd)
        except OSError as exc:
            self.__exit__()
            raise UsageError(f"cannot open: {disk_message(exc)}", self.path) from None
        if real_path_problem(self.path) or not os.path.samestat(os.fstat(self.run_fd), os.stat(self.path)):
            self.__exit__()
            raise UsageError("changed while being opened (a symbolic link was swapped in); nothing was done", self.path)
        self.dev = os.fstat(self.ckpt_fd).st_dev
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in (self.ckpt_fd, self.run_fd):
            if fd >= 0:
                os.close(fd)
        self.run_fd = self.ckpt_fd = -1

    def journal(self, record: dict[str, Any]) -> None:
        """Append one record to ``prune-log.jsonl`` and fsync it."""
        import datetime as _dt

        record = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **record}
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(LOG_FILE, flags, 0o644, dir_fd=self.run_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                raise UsageError(
                    "is a symbolic link or a pipe; prune never writes through one: remove it", self.path / LOG_FILE
                ) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise UsageError(
                    "is not a regular file of its own (a hard link or a special file); prune never writes through one",
                    self.path / LOG_FILE,
                )
            data = json.dumps(record) + "\n"
            if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
                data = "\n" + data  # a torn line left by a full disk or a kill stays apart
            os.write(fd, data.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def trash_fd(self, create: bool) -> int | None:
        """A descriptor of ``checkpoints/.ckptaudit-trash`` (created when asked), or None."""
        if create:
            try:
                os.mkdir(TRASH_DIR, 0o755, dir_fd=self.ckpt_fd)
            except FileExistsError:
                pass
        try:
            return os.open(TRASH_DIR, _DIR_FLAGS, dir_fd=self.ckpt_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UsageError(
                    "is not a plain folder; prune never acts through a link: remove it", self.path / "checkpoints" / TRASH_DIR
                ) from None
            raise

    def identity(self, name: str) -> tuple[int, int] | None:
        """(st_dev, st_ino) of a real folder directly inside ``checkpoints/``, or None."""
        try:
            st = os.stat(name, dir_fd=self.ckpt_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        return st.st_dev, st.st_ino


def mount_points() -> set[str]:
    """Every mount point of this process's mount table (``/proc/self/mountinfo``), as real
    paths; empty where there is no such table. A bind mount of a folder of the same file
    system keeps its ``st_dev``: only the table tells that it is a mount."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return set()
    out = set()
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            # NOTE: the table escapes space, tab, newline and backslash as octal (\040)
            out.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return out


def mount_id(fd: int) -> int | None:
    """The mount a descriptor lies on (``/proc/self/fdinfo``'s ``mnt_id``), or None where
    the kernel does not say. Two folders on one mount share it; a bind mount has its own."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def mount_below(path: Path) -> Path | None:
    """A mount point at or below ``path`` (by the mount table), or None."""
    real = os.path.realpath(path)
    prefix = real.rstrip("/") + "/"
    for point in sorted(mount_points()):
        if point == real or point.startswith(prefix):
            return Path(point)
    return None


def foreign_device(path: Path, dev: int) -> Path | None:
    """The first entry under ``path`` (itself included) on another device than ``dev``, or
    a mount point at or below it (a bind mount of the same file system shares ``dev``)."""
    try:
        if os.lstat(path).st_dev != dev:
            return path
    except FileNotFoundError:
        return None
    mounted = mount_below(path)
    if mounted is not None:
        return mounted
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            entry = Path(root) / name
            try:
                if os.lstat(entry).st_dev != dev:
                    return entry
            except FileNotFoundError:
                continue
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return None


def _entries(fd: int) -> Iterator[str]:
    with os.scandir(fd) as it:
        names = [e.name for e in it]
    yield from names


def _refuse_mount(parent_fd: int, fd: int, shown: Path) -> None:
    """Raise :class:`CrossDeviceError` when the folder ``fd`` is a mount point: on another
    mount than its parent (a bind mount of the same file system too), checked on the
    descriptors themselves, so a path swapped after planning cannot slip past."""
    here, parent = mount_id(fd), mount_id(parent_fd)
    if here is not None and parent is not None and here != parent:
        raise CrossDeviceError(
            "is a mount point (a bind mount or another file system); prune never descends into one: "
            "unmount it, then run prune again",
            shown,
        )


def remove_tree(parent_fd: int, name: str, dev: int, shown: Path, step: Any = None) -> None:
    """Delete ``name`` (in the folder ``parent_fd``) and all below it, through descriptors.

    Symbolic links are unlinked, never followed; an entry on another device than ``dev``
    (a mount point) raises :class:`CrossDeviceError` before anything below it is touched.
    """
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if st.st_dev != dev:
        raise CrossDeviceError(
            "is a mount point (another device); prune never crosses a device boundary: unmount it, then run prune again",
            shown,
        )
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        if step is not None:
            step()
        return
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        if not os.path.samestat(os.fstat(fd), st):
            raise UsageError("changed while being deleted; stopped", shown)
        _refuse_mount(parent_fd, fd, shown)
        for child in _entries(fd):
            remove_tree(fd, child, dev, shown / child, step)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def copy_tree(src_fd: int, name: str, dst_fd: int, dst_name: str, dev: int, shown: Path, step: Any = None) -> None:
    """Copy ``name`` into ``dst_name`` (another device), links as links, never crossing ``dev``."""
    st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
    if st.st_dev != dev:
        raise CrossDeviceError("is a mount point (another device); prune never crosses a device boundary", shown)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=src_fd), dst_name, dir_fd=dst_fd)
        return
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst_name, 0o755, dir_fd=dst_fd)
        sfd = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
        try:
            _refuse_mount(src_fd, sfd, shown)
            dfd = os.open(dst_name, _DIR_FLAGS, dir_fd=dst_fd)
            try:
                for child in _entries(sfd):
                    copy_tree(sfd, child, dfd, child, dev, shown / child, step)
                os.fsync(dfd)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        return
    if not stat.S_ISREG(st.st_mode):
        raise UsageError("is not a regular file, folder or link; move it by hand", shown)
    rfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    try:
        wfd = os.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dst_fd)
        try:
            copy_fd(rfd, wfd)
        finally:
            os.close(wfd)
    finally:
        os.close(rfd)
    if step is not None:
        step()


def move_weights(ckpt_fd: int, name: str, trash_fd: int, keep: set[str], identity: tuple[int, int] | None, shown: Path) -> None:
    """Move every entry of the checkpoint folder ``name`` except ``keep`` (its predictions
    and meta.json) into a new folder ``name`` of the trash, through descriptors.

    The checkpoint folder itself stays, a candidate of every later statistic. A folder
    swapped since planning, a mount point, or anything but a plain entry is refused
    before it moves; a kill leaves each entry whole, in the checkpoint or in the trash."""
    cfd = os.open(name, _DIR_FLAGS, dir_fd=ckpt_fd)
    try:
        st = os.fstat(cfd)
        if identity is not None and (st.st_dev, st.st_ino) != identity:
            raise UsageError(f"{name} changed since it was planned (replaced or made a link); stopped", shown / name)
        _refuse_mount(ckpt_fd, cfd, shown / name)
        os.mkdir(name, 0o755, dir_fd=trash_fd)
        dfd = os.open(name, _DIR_FLAGS, dir_fd=trash_fd)
        try:
            for child in _entries(cfd):
                if child in keep:
                    continue
                cst = os.stat(child, dir_fd=cfd, follow_symlinks=False)
                if cst.st_dev != st.st_dev:
                    raise CrossDeviceError(
                        "is a mount point (another device); prune never crosses a device boundary", shown / name / child
                    )
                if stat.S_ISDIR(cst.st_mode):
                    sub = os.open(child, _DIR_FLAGS, dir_fd=cfd)
                    try:
                        _refuse_mount(cfd, sub, shown / name / child)
                    finally:
                        os.close(sub)
                os.rename(child, child, src_dir_fd=cfd, dst_dir_fd=dfd)
            os.fsync(dfd)
            os.fsync(cfd)
        finally:
            os.close(dfd)
    finally:
        os.close(cfd)
