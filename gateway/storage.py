"""The file system under the outbox: how much room it has, whether it is
read-only, and what a failed write means.

The gateway treats a disk that is full, failing (EIO) or read-only like an
outbox at its size limit: nothing is stored, nodes get ACK status "full" and
keep their frames (DESIGN.md, delivery guarantee).  It also stops a little
before the disk is full: deleting delivered rows and folding the WAL need
room of their own (in WAL mode a DELETE writes pages too), so a disk filled
to the last byte could never be pruned again.  That floor is ``reserve``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass

RESERVE_MAX = 64 * 2**20  # bytes kept free on the outbox's file system, at most
RESERVE_SHARE = 0.05  # ... and at most this share of it (a small test disk still takes frames)

# SQLite's primary result codes that mean "the storage cannot take a write"
# (https://www.sqlite.org/rescode.html): FULL, IOERR (EIO, fsync failed),
# READONLY (the file or its file system), CANTOPEN (no room for -wal/-shm).
_STORAGE_CODES = {sqlite3.SQLITE_FULL: "disk full", sqlite3.SQLITE_IOERR: "I/O error",
                  sqlite3.SQLITE_READONLY: "read-only", sqlite3.SQLITE_CANTOPEN: "cannot open its files"}
_OS_ERRORS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EIO: "I/O error",
              errno.EROFS: "read-only file system"}


@dataclass(frozen=True, slots=True)
class DiskSpace:
    """One look at a file system (``os.statvfs``)."""

    free: int  # bytes an unprivileged writer may still use
    total: int
    read_only: bool

    @property
    def reserve(self) -> int:
        return reserve(self.total)


def reserve(total: int) -> int:
    """Bytes left free on a file system of ``total`` bytes (see the module doc)."""
    return int(min(RESERVE_MAX, total * RESERVE_SHARE))


def disk_space(path: str) -> DiskSpace | None:
    """The file system holding ``path`` (a file or directory), or None when
    the system cannot say."""
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    return DiskSpace(info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize, bool(info.f_flag & os.ST_RDONLY))


def storage_problem(exc: BaseException) -> str | None:
    """What a failed write says about the storage ("disk full", "I/O error",
    "read-only", ...), or None when it is not a storage problem (a bug, a
    constraint)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return _STORAGE_CODES.get(code & 0xFF)
        text = str(exc).lower()  # Python builds without error codes: SQLite's own messages
        for words, problem in (("disk is full", "disk full"), ("disk i/o", "I/O error"), ("readonly", "read-only"),
                               ("unable to open", "cannot open its files")):
            if words in text:
                return problem
        return None
    if isinstance(exc, OSError):
        return _OS_ERRORS.get(exc.errno)
    return None


def write_test(directory: str) -> str | None:
    """Write, fsync and remove a small file in ``directory``: None when that
    works, else what stopped it ("read-only file system", "disk full",
    "I/O error", "permission denied", ...).  SQLite reports most of these as
    one "disk I/O error"; the system call says which."""
    path = os.path.join(directory, f".smemet-write-test-{os.getpid()}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"smemet")
            os.fsync(fd)
        finally:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
    except OSError as exc:
        return _OS_ERRORS.get(exc.errno) or (exc.strerror or str(exc)).lower()
    return None


def size_text(n: float) -> str:
    """Bytes for people: 950 B, 12.3 KiB, 4.0 MiB, 1.5 GiB."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
